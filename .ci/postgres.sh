#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for CI: initdb in a temporary directory,
# listening on a free port of 127.0.0.1 only, fsync off, trust auth, and an
# empty database "wemesse".
#
# Executed:
#   .ci/postgres.sh start   prints the DSN as its last stdout line:
#                           postgres://postgres@127.0.0.1:PORT/wemesse?sslmode=disable
#   .ci/postgres.sh stop    stops the cluster and removes its directory
#
# Sourced (`. .ci/postgres.sh`): defines pg_start and pg_stop, which do the
# same; pg_start also sets PG_DSN in the calling shell.
#
# start and stop share a state file: $PG_STATE if set. Otherwise start
# creates one with mktemp, exports PG_STATE when sourced, and prints
# "PG_STATE=<file>" on stderr; pass it to stop as PG_STATE or as its
# argument: `.ci/postgres.sh stop <file>`.
#
# Binaries come from $WEMESSE_PG_BIN, /usr/lib/postgresql/15/bin or
# `pg_config --bindir`. As root, the server runs as the "postgres" OS user,
# since PostgreSQL refuses to run as root.
#
# Everything here returns non-zero on failure instead of relying on set -e,
# so that the file can be sourced into any shell.

pg__log() { printf 'postgres.sh: %s\n' "$*" >&2; }

# pg__bindir prints the directory holding initdb, pg_ctl and postgres.
pg__bindir() {
	local dir
	for dir in "${WEMESSE_PG_BIN:-}" /usr/lib/postgresql/15/bin "$(pg_config --bindir 2>/dev/null)"; do
		if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
			printf '%s\n' "$dir"
			return 0
		fi
	done
	pg__log "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in \$WEMESSE_PG_BIN, /usr/lib/postgresql/15/bin or pg_config --bindir"
	return 1
}

# pg__as_server runs a command as the server's OS user: postgres when we
# are root, ourselves otherwise. The command runs in / so that a private
# working directory does not get in the way.
pg__as_server() {
	if [[ $(id -u) -ne 0 ]]; then
		(cd / && "$@")
	elif command -v runuser >/dev/null 2>&1; then
		(cd / && runuser -u postgres -- "$@")
	else
		(cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
	fi
}

# pg__free_port prints a TCP port of 127.0.0.1 that nobody listens on.
pg__free_port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' && return 0
	fi
	local port _
	for _ in $(seq 1 50); do
		port=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			printf '%s\n' "$port"
			return 0
		fi
	done
	pg__log "no free port found"
	return 1
}

# pg_start starts a new cluster, prints its DSN and sets PG_DSN and PG_STATE.
pg_start() {
	local bindir base port dsn attempt started=""
	bindir=$(pg__bindir) || return 1
	if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
		pg__log "running as root, but there is no \"postgres\" OS user to run the server as"
		return 1
	fi
	if [[ -z "${PG_STATE:-}" ]]; then
		PG_STATE=$(mktemp "${TMPDIR:-/tmp}/wemesse-postgres-state.XXXXXX") || return 1
		export PG_STATE
		pg__log "PG_STATE=$PG_STATE"
	fi
	# /tmp, not $TMPDIR: as root, the postgres user must be able to reach it.
	base=$(mktemp -d /tmp/wemesse-postgres.XXXXXX) || return 1
	# Written first, so that pg_stop can clean up whatever comes next.
	printf 'base=%s\nbindir=%s\n' "$base" "$bindir" >"$PG_STATE" || { rm -rf "$base"; return 1; }
	chmod 755 "$base"
	if ! { mkdir -m 700 "$base/data" && mkdir -m 755 "$base/sock" && : >"$base/server.log"; }; then
		pg_stop
		return 1
	fi
	if [[ $(id -u) -eq 0 ]]; then
		chown -R postgres: "$base" || { pg_stop; return 1; }
	fi

	if ! pg__as_server "$bindir/initdb" -D "$base/data" -A trust -U postgres --no-sync \
		-E UTF8 --locale=C >"$base/initdb.log" 2>&1; then
		pg__log "initdb failed:"
		cat "$base/initdb.log" >&2
		pg_stop
		return 1
	fi

	# A port can be taken between choosing and binding it: retry.
	for attempt in 1 2 3; do
		port=$(pg__free_port) || break
		if pg__as_server "$bindir/pg_ctl" -w -t 60 -D "$base/data" -l "$base/server.log" \
			-o "-p $port -k $base/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
			start >"$base/pg_ctl.log" 2>&1; then
			started=1
			break
		fi
		pg__log "pg_ctl start failed on port $port (attempt $attempt)"
		pg__as_server "$bindir/pg_ctl" -D "$base/data" -m immediate -w stop >/dev/null 2>&1
	done
	if [[ -z "$started" ]]; then
		cat "$base/pg_ctl.log" >&2
		tail -n 30 "$base/server.log" >&2
		pg_stop
		return 1
	fi
	printf 'port=%s\n' "$port" >>"$PG_STATE"

	local psql="$bindir/psql"
	[[ -x "$psql" ]] || psql=psql
	if ! "$psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
		-c 'CREATE DATABASE wemesse' >"$base/createdb.log" 2>&1; then
		pg__log "CREATE DATABASE wemesse failed:"
		cat "$base/createdb.log" >&2
		pg_stop
		return 1
	fi
	dsn="postgres://postgres@127.0.0.1:$port/wemesse?sslmode=disable"
	PG_DSN=$dsn
	export PG_DSN
	printf '%s\n' "$dsn"
}

# pg_stop [STATE_FILE] stops the cluster and removes its directory and the
# state file. Stopping what is already gone is not an error.
pg_stop() {
	local state=${1:-${PG_STATE:-}} base="" bindir="" line pid
	if [[ -z "$state" ]]; then
		pg__log "stop: no state file: set PG_STATE or pass it as an argument"
		return 1
	fi
	[[ -f "$state" ]] || return 0
	while IFS= read -r line; do
		case $line in
		base=*) base=${line#base=} ;;
		bindir=*) bindir=${line#bindir=} ;;
		esac
	done <"$state"
	if [[ -n "$base" && -d "$base" ]]; then
		if [[ -f "$base/data/postmaster.pid" ]]; then
			pg__as_server "$bindir/pg_ctl" -D "$base/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
				pg__as_server "$bindir/pg_ctl" -D "$base/data" -m immediate -w -t 30 stop >/dev/null 2>&1
			# Last resort: the postmaster's pid is the first line of postmaster.pid.
			if [[ -f "$base/data/postmaster.pid" ]]; then
				pid=$(head -n 1 "$base/data/postmaster.pid" 2>/dev/null)
				if [[ "$pid" =~ ^[0-9]+$ ]]; then
					kill -9 "$pid" 2>/dev/null
					sleep 0.5
				fi
			fi
		fi
		case $base in
		/tmp/wemesse-postgres.*) rm -rf "$base" ;;
		*) pg__log "stop: refusing to remove unexpected directory $base" ;;
		esac
	fi
	rm -f "$state"
	return 0
}

# Executed rather than sourced: dispatch on the first argument.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	set -uo pipefail
	case ${1:-} in
	start) pg_start ;;
	stop) pg_stop "${2:-}" ;;
	*)
		printf 'usage: %s start | stop [STATE_FILE]\n' "$0" >&2
		exit 2
		;;
	esac
fi
