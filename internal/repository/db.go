// Package repository stores Wemesse's data with GORM, on PostgreSQL or on the
// embedded SQLite. It translates driver errors into model error codes.
package repository

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/wemesse/server/internal/config"
	"github.com/wemesse/server/internal/model"
)

// Open connects to the database that dsn names: a postgres:// or
// postgresql:// URL selects PostgreSQL, anything else is a SQLite file path.
// SQLite runs in WAL mode with a busy timeout and immediate transactions, so
// concurrent writers queue instead of failing with "database is locked".
func Open(ctx context.Context, dsn string) (*gorm.DB, error) {
	gcfg := &gorm.Config{
		Logger:                 logger.Discard,
		TranslateError:         true,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	}
	var dialector gorm.Dialector
	if config.IsPostgresURL(dsn) {
		dialector = postgres.Open(withConnectTimeout(dsn))
	} else {
		if dir := filepath.Dir(dsn); dir != "." {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("repository: create database directory: %w", err)
			}
		}
		q := url.Values{}
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Set("_txlock", "immediate")
		dialector = sqlite.Open("file:" + dsn + "?" + q.Encode())
	}
	db, err := gorm.Open(dialector, gcfg)
	if err != nil {
		return nil, fmt.Errorf("repository: open database: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("repository: open database: %w", err)
	}
	if config.IsPostgresURL(dsn) {
		sqlDB.SetMaxOpenConns(32)
		sqlDB.SetMaxIdleConns(32)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	} else {
		// One writer at a time is all SQLite allows; a small pool keeps
		// readers concurrent without piling writers onto the busy timeout.
		sqlDB.SetMaxOpenConns(8)
		sqlDB.SetMaxIdleConns(8)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("repository: connect to database: %w", err)
	}
	return db, nil
}

// maxPings bounds the pings of one Ping: more than the pool's connections.
const maxPings = 64

// Ping checks that the database answers. An idle connection that died with
// an outage fails one ping and is dropped (database/sql retries getting a
// connection, not the ping), and the pool may hold many after the database
// is back, so Ping goes on until one answers or an error says more.
func Ping(ctx context.Context, db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	for range maxPings {
		if err = sqlDB.PingContext(ctx); !errors.Is(err, driver.ErrBadConn) || ctx.Err() != nil {
			break
		}
	}
	return translate(err, "database")
}

// OpenMigrated opens dsn and brings its schema up to date with Migrate;
// on failure nothing is left open.
func OpenMigrated(ctx context.Context, dsn string) (*gorm.DB, error) {
	db, err := Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := Migrate(ctx, db); err != nil {
		Close(db)
		return nil, err
	}
	return db, nil
}

// Close closes the database's connection pool.
func Close(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// translate turns a driver error into a model error where one fits. what
// names the operation for the wrapped message.
func translate(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrRecordNotFound):
		return model.Errorf(model.NotFound, "The %s does not exist.", what)
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return model.Errorf(model.Conflict, "The %s already exists.", what)
	case unavailable(err):
		return fmt.Errorf("repository: %s: %w: %w", what, err, model.Errorf(model.Unavailable, "The database is unavailable; retry shortly."))
	}
	return fmt.Errorf("repository: %s: %w", what, err)
}

// unavailable reports whether err means the database cannot be reached or
// is going away, rather than that the request was wrong.
func unavailable(err error) bool {
	var netErr net.Error
	var connErr *pgconn.ConnectError
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.As(err, &netErr), errors.As(err, &connErr), pgconn.Timeout(err), pgconn.SafeToRetry(err):
		return true
	case errors.As(err, &pgErr):
		// Class 08: connection exceptions; 57P0x: the server shuts down.
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P")
	}
	return false
}

// withConnectTimeout bounds how long opening a connection may take, so that
// requests fail promptly while the database is unreachable.
func withConnectTimeout(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Query().Has("connect_timeout") {
		return dsn
	}
	q := u.Query()
	q.Set("connect_timeout", "3")
	u.RawQuery = q.Encode()
	return u.String()
}
