package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"

	"github.com/wemesse/server/internal/model"
)

// upsertStatement writes one report per device, given as column arrays, in
// one statement, so one round trip and one commit. It locks the devices'
// known rows in key order and reads their versions, then upserts every
// device in key order: a known row is updated and keeps its id, a new one
// is inserted with the next id (so updates leave no gaps in the ids), and a
// device another transaction inserts meanwhile is left alone (the DO UPDATE
// condition) for the caller to write again. Every device that is new or
// changed its version adds one to its release's uploads; the release rows
// are locked in id order and last, so concurrent statements never deadlock
// and hold the hot counter row only until their commit. It returns the id of
// every device written. Rows are only ever reached through the unique index
// (the lateral LIMIT 1 lookup and the ON CONFLICT arbiter; the pipeline's
// connection plans without sequential scans, see devicePipeline.prepare),
// so a plan cached while the table was small stays fast when it is large.
// The text never changes, so it is prepared once per connection whatever
// the batch size.
// 'users_id_seq' stands for the sequence users.id really uses (upsertSQL):
// a constant there, its plan calls nextval on it directly, where looking it
// up for every new row cost 5-10% of the statement.
const upsertStatement = `WITH v AS MATERIALIZED (
	SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
		$7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::text[])
	AS v (session_id, device_mac, app_locale, app_version, device_locale, device_model,
		device_sdk, session_activity, session_register, tg_version, target_abi, abi)
	ORDER BY session_id, device_mac
), old AS MATERIALIZED (
	SELECT u.id, v.session_id, v.device_mac, u.app_version FROM v CROSS JOIN LATERAL (
		SELECT id, COALESCE(app_version, '') AS app_version FROM users
		WHERE users.session_id = v.session_id AND users.device_mac = v.device_mac
		LIMIT 1 FOR UPDATE) u
), up AS (
	INSERT INTO users (id, session_id, device_mac, app_locale, app_version, device_locale, device_model,
		device_sdk, session_activity, session_register, tg_version, target_abi)
	SELECT COALESCE(old.id, nextval('users_id_seq'::regclass)), v.session_id, v.device_mac,
		v.app_locale, v.app_version, v.device_locale, v.device_model, v.device_sdk, v.session_activity,
		v.session_register, v.tg_version, v.target_abi
	FROM v LEFT JOIN old ON old.session_id = v.session_id AND old.device_mac = v.device_mac
	ORDER BY v.session_id, v.device_mac
	ON CONFLICT (session_id, device_mac) DO UPDATE SET app_locale = EXCLUDED.app_locale,
		app_version = EXCLUDED.app_version, device_locale = EXCLUDED.device_locale,
		device_model = EXCLUDED.device_model, device_sdk = EXCLUDED.device_sdk,
		session_activity = EXCLUDED.session_activity, session_register = EXCLUDED.session_register,
		tg_version = EXCLUDED.tg_version, target_abi = EXCLUDED.target_abi
	WHERE EXISTS (SELECT FROM old WHERE old.session_id = EXCLUDED.session_id AND old.device_mac = EXCLUDED.device_mac)
	RETURNING id, session_id, device_mac
), counts AS (
	SELECT (SELECT a.id FROM apps a WHERE a.app_version = v.app_version AND a.target_abi IN (v.abi, '')
		ORDER BY CASE WHEN a.target_abi = '' THEN 1 ELSE 0 END LIMIT 1) AS id, COUNT(*) AS n
	FROM v JOIN up ON up.session_id = v.session_id AND up.device_mac = v.device_mac
	LEFT JOIN old ON old.session_id = v.session_id AND old.device_mac = v.device_mac
	WHERE old.app_version IS DISTINCT FROM v.app_version
	GROUP BY v.app_version, v.abi
), locked AS (
	SELECT id FROM apps WHERE id IN (SELECT id FROM counts) ORDER BY id FOR UPDATE
), bump AS (
	UPDATE apps SET uploads = COALESCE(apps.uploads, 0) + c.n
	FROM (SELECT id, SUM(n)::bigint AS n FROM counts WHERE id IN (SELECT id FROM locked) GROUP BY id) c
	WHERE apps.id = c.id
)
SELECT id, session_id, device_mac FROM up`

// maxStatementRetries bounds how often one round is written again after a
// deadlock or serialization failure, or for devices inserted concurrently.
const maxStatementRetries = 5

// writePostgres is WriteBatch on PostgreSQL: rounds of upsertStatement on
// the device pipeline, each holding at most one report per device, so each
// report is committed with its adoption count atomically and a device's
// reports in order. A round is sent once the one before it has executed, so
// the reports of a device that another transaction inserted meanwhile, and
// a device's later reports, are written after what came before them.
func (r *Users) writePostgres(ctx context.Context, reports []model.DeviceReport) (func() ([]model.User, error), error) {
	p, err := r.pipeline(ctx)
	if err != nil {
		return nil, translate(err, "device sessions")
	}
	ids := make([]int64, len(reports))
	todo := make([]int, len(reports)) // indexes of reports not yet written, in order
	for i := range reports {
		todo[i] = i
	}
	var sent []*round
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt > len(reports)+maxStatementRetries {
			return nil, fmt.Errorf("repository: device sessions: still racing after %d statements", attempt)
		}
		round, rest := firstPerDevice(reports, todo)
		rd, err := p.exec(ctx, roundArgs(reports, round))
		if err != nil {
			if retryable(err) && attempt < maxStatementRetries {
				continue
			}
			return nil, translate(err, "device sessions")
		}
		sent = append(sent, rd)
		for _, i := range round {
			if id, ok := rd.rows[keyOf(reports[i])]; ok {
				ids[i] = id
			} else {
				rest = append(rest, i) // inserted by another transaction meanwhile
			}
		}
		slices.Sort(rest)
		todo = rest
	}
	return func() ([]model.User, error) {
		for _, rd := range sent {
			if err := rd.commit(ctx); err != nil {
				return nil, translate(err, "device sessions")
			}
		}
		out := make([]model.User, len(reports))
		for i, rep := range reports {
			out[i] = rep.User
			out[i].ID = ids[i]
		}
		return out, nil
	}, nil
}

func keyOf(rep model.DeviceReport) device { return device{rep.User.SessionID, rep.User.DeviceMac} }

// firstPerDevice splits todo into each device's first report and the rest.
func firstPerDevice(reports []model.DeviceReport, todo []int) (round, rest []int) {
	seen := make(map[device]bool, len(todo))
	for _, i := range todo {
		if k := keyOf(reports[i]); !seen[k] {
			seen[k] = true
			round = append(round, i)
		} else {
			rest = append(rest, i)
		}
	}
	return round, rest
}

// roundArgs are upsertStatement's parameters for the reports at idx, one
// per device: a column array each.
func roundArgs(reports []model.DeviceReport, idx []int) []any {
	n := len(idx)
	var (
		sessions, activity, register                    = make([]int64, n), make([]int64, n), make([]int64, n)
		macs, locales, versions, dlocales, models, sdks = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		tgs, targets, abis                              = make([]string, n), make([]string, n), make([]string, n)
	)
	for j, i := range idx {
		u := reports[i].User
		sessions[j], macs[j], locales[j], versions[j], dlocales[j], models[j] = u.SessionID, u.DeviceMac, u.AppLocale, u.AppVersion, u.DeviceLocale, u.DeviceModel
		sdks[j], activity[j], register[j], tgs[j], targets[j], abis[j] = u.DeviceSDK, u.SessionActivity, u.SessionRegister, u.TgVersion, u.TargetABI, reports[i].ABI
	}
	return []any{sessions, macs, locales, versions, dlocales, models, sdks, activity, register, tgs, targets, abis}
}

// pipeline returns the device pipeline, made on first use.
func (r *Users) pipeline(ctx context.Context) (*devicePipeline, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pipe != nil {
		return r.pipe, nil
	}
	if r.closed {
		return nil, net.ErrClosed
	}
	sqlDB, err := r.db.DB()
	if err != nil {
		return nil, err
	}
	text, err := upsertSQL(ctx, sqlDB)
	if err != nil {
		return nil, err
	}
	d, ok := r.db.Dialector.(*postgres.Dialector)
	if !ok || d.Config == nil || d.DSN == "" {
		return nil, errors.New("repository: device sessions need a PostgreSQL DSN")
	}
	if r.pipe, err = newDevicePipeline(d.DSN, text); err != nil {
		return nil, err
	}
	return r.pipe, nil
}

// upsertSQL returns upsertStatement naming the sequence behind users.id:
// a table made by an earlier server or restored from a dump may use
// another than users_id_seq.
func upsertSQL(ctx context.Context, db *sql.DB) (string, error) {
	var seq sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT pg_get_serial_sequence('users', 'id')").Scan(&seq); err != nil {
		return "", err
	}
	if !seq.Valid {
		return "", errors.New("repository: users.id has no sequence")
	}
	return strings.Replace(upsertStatement, "'users_id_seq'", "'"+strings.ReplaceAll(seq.String, "'", "''")+"'", 1), nil
}

// retryable reports whether err is a deadlock or serialization failure,
// after which the same statement may simply run again.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}
