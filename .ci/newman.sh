#!/usr/bin/env bash
# Runs postman_collection.json with newman against a freshly built server,
# once per database named on the command line:
#
#   .ci/newman.sh [sqlite] [postgres]      (default: sqlite postgres)
#
# For each database: a fresh database (a new SQLite file, or a throwaway
# PostgreSQL cluster from .ci/postgres.sh), a fresh upload directory, a
# random admin secret in WEMESSE_SIGNATURE, a client-role secret from
# `wemesse signature create --role client`, the server on a free port of
# 127.0.0.1, then newman. Exits non-zero if anything fails.
#
# newman is installed once, pinned, into $NEWMAN_PREFIX
# (default ~/.cache/wemesse-newman); later runs reuse it.
set -euo pipefail

NEWMAN_VERSION=6.2.1
NEWMAN_PREFIX=${NEWMAN_PREFIX:-${HOME:-/tmp}/.cache/wemesse-newman}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

log() { printf 'newman.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

dbs=("$@")
[[ ${#dbs[@]} -gt 0 ]] || dbs=(sqlite postgres)
for db in "${dbs[@]}"; do
	case $db in
	sqlite | postgres) ;;
	*) die "unknown database \"$db\"; use sqlite and/or postgres" ;;
	esac
done
for tool in go node npm curl; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

# The test servers get exactly the settings below: drop any WEMESSE_* of the
# calling environment (WEMESSE_PG_BIN, read by .ci/postgres.sh, stays).
while IFS= read -r name; do
	[[ $name == WEMESSE_PG_BIN ]] || unset "$name"
done < <(compgen -e | grep '^WEMESSE_' || true)

# --- cleanup: everything this script starts or creates ----------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/wemesse-newman.XXXXXX")
server_pid=""
export PG_STATE="$work/postgres.state"

stop_server() {
	if [[ -n "$server_pid" ]]; then
		kill -TERM "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=""
	fi
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_server
	if [[ -f "$PG_STATE" ]]; then
		"$repo/.ci/postgres.sh" stop "$PG_STATE" || true
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- newman, pinned ----------------------------------------------------------
newman="$NEWMAN_PREFIX/node_modules/.bin/newman"
if [[ -x "$newman" && "$("$newman" --version 2>/dev/null)" == "$NEWMAN_VERSION" ]]; then
	log "using newman $NEWMAN_VERSION from $NEWMAN_PREFIX"
else
	log "installing newman $NEWMAN_VERSION into $NEWMAN_PREFIX"
	[[ "$(npm view "newman@$NEWMAN_VERSION" version 2>/dev/null)" == "$NEWMAN_VERSION" ]] ||
		die "newman@$NEWMAN_VERSION is not available from the npm registry"
	# Install beside the cache and swap it in, so that an interrupted install
	# never leaves a half-filled cache behind.
	mkdir -p "$(dirname "$NEWMAN_PREFIX")"
	staging=$(mktemp -d "$NEWMAN_PREFIX.new.XXXXXX")
	chmod 755 "$staging"
	if ! npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$staging" \
		"newman@$NEWMAN_VERSION" >&2; then
		rm -rf "$staging"
		die "npm install newman@$NEWMAN_VERSION failed"
	fi
	rm -rf "$NEWMAN_PREFIX"
	mv "$staging" "$NEWMAN_PREFIX"
	[[ "$("$newman" --version)" == "$NEWMAN_VERSION" ]] || die "newman $NEWMAN_VERSION did not install"
fi

# --- the server --------------------------------------------------------------
log "building bin/wemesse"
CGO_ENABLED=0 go build -o bin/wemesse ./cmd/wemesse
# Run a private copy: others may rebuild bin/wemesse while the tests run.
cp bin/wemesse "$work/wemesse"
wemesse="$work/wemesse"

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null && return
	local port
	while :; do
		port=$((20000 + RANDOM % 40000))
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
	done
}

random_secret() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# run_one DB runs the collection against a fresh server on DB; returns
# non-zero on failure.
run_one() {
	local db=$1 dir dsn port base admin client code i
	dir="$work/$db"
	mkdir -p "$dir/uploads"
	case $db in
	sqlite) dsn="$dir/wemesse.db" ;;
	postgres)
		dsn=$("$repo/.ci/postgres.sh" start | tail -n 1) || { log "could not start PostgreSQL"; return 1; }
		[[ "$dsn" == postgres://* ]] || { log "unexpected DSN from postgres.sh: $dsn"; return 1; }
		;;
	esac
	port=$(free_port)
	base="http://127.0.0.1:$port"
	admin=$(random_secret)

	# The server runs in its own directory so that no .env of the repository
	# applies; every setting it needs is passed explicitly.
	export WEMESSE_ADDR="127.0.0.1:$port"
	export WEMESSE_DATABASE_URL="$dsn"
	export WEMESSE_UPLOAD_DIR="$dir/uploads"
	export WEMESSE_PUBLIC_URL="$base/uploads"
	export WEMESSE_MIRROR_URL="https://mirror.wemesse.invalid/uploads"
	export WEMESSE_SIGNATURE="$admin"
	"$wemesse" answer-key create >"$dir/answer-key.pem"
	export WEMESSE_ANSWER_KEY_FILE="$dir/answer-key.pem"
	(cd "$dir" && exec "$wemesse" serve) >"$dir/server.log" 2>&1 &
	server_pid=$!

	for ((i = 0; i < 150; i++)); do
		if ! kill -0 "$server_pid" 2>/dev/null; then
			log "the server exited during start:"
			tail -n 30 "$dir/server.log" >&2
			server_pid=""
			return 1
		fi
		code=$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz" || true)
		[[ "$code" == 200 ]] && break
		sleep 0.2
	done
	[[ "$code" == 200 ]] || { log "the server did not answer /healthz within 30 s"; tail -n 30 "$dir/server.log" >&2; return 1; }

	client=$(cd "$dir" && "$wemesse" signature create --role client 2>>"$dir/server.log" | tail -n 1) || {
		log "wemesse signature create --role client failed"
		tail -n 30 "$dir/server.log" >&2
		return 1
	}
	[[ -n "$client" ]] || { log "wemesse signature create printed no secret"; return 1; }

	# The running server re-reads signatures periodically
	# (WEMESSE_AUTH_REFRESH, 2 s): wait until it knows the new one. GET
	# /api/v1/users changes nothing and answers 403 to a client secret it
	# knows, 401 to one it does not know yet.
	for ((i = 0; i < 60; i++)); do
		code=$(curl -s -o /dev/null -w '%{http_code}' -H "signature: $client" "$base/api/v1/users" || true)
		[[ "$code" == 403 ]] && break
		sleep 0.25
	done
	[[ "$code" == 403 ]] || { log "the server did not accept the new client signature (last status $code)"; return 1; }

	local rc=0
	"$newman" run postman_collection.json --working-dir . \
		--env-var "baseUrl=$base" \
		--env-var "signature=$admin" \
		--env-var "clientSignature=$client" \
		--env-var "publicUrl=$WEMESSE_PUBLIC_URL" \
		--env-var "mirrorUrl=$WEMESSE_MIRROR_URL" \
		--timeout-request 30000 \
		--reporters cli || rc=$?

	stop_server
	if [[ $rc -ne 0 ]]; then
		log "server log (tail):"
		tail -n 40 "$dir/server.log" >&2
	fi
	if [[ $db == postgres ]]; then
		"$repo/.ci/postgres.sh" stop "$PG_STATE" || true
	fi
	return "$rc"
}

failed=()
for db in "${dbs[@]}"; do
	log "=== $db ==="
	if run_one "$db"; then
		echo "PASS: newman $NEWMAN_VERSION, postman_collection.json on $db"
	else
		echo "FAIL: newman $NEWMAN_VERSION, postman_collection.json on $db"
		failed+=("$db")
		stop_server
		"$repo/.ci/postgres.sh" stop "$PG_STATE" >/dev/null 2>&1 || true
	fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
	echo "FAIL: the Postman collection failed on: ${failed[*]}"
	exit 1
fi
echo "PASS: the Postman collection passed on: ${dbs[*]}"
