package repository

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// changes is the PostgreSQL channel on which writes announce themselves, so
// that every server sharing the database re-reads what changed.
const changes = "wemesse_changes"

// Topics announced on the changes channel.
const (
	TopicReleases   = "releases"
	TopicSignatures = "signatures"
)

// announce tells other servers, when tx commits, that topic changed. On
// SQLite, which only one server uses, it does nothing.
func announce(tx *gorm.DB, topic string) error {
	if tx.Dialector.Name() != "postgres" {
		return nil
	}
	return tx.Exec("SELECT pg_notify(?, ?)", changes, topic).Error
}

// Listen calls fn with each topic announced on the PostgreSQL database at
// dsn until ctx ends. It reconnects after errors, and after every
// (re)connection calls fn with every topic, since announcements made while
// it was away are lost.
func Listen(ctx context.Context, dsn string, fn func(topic string), log *slog.Logger) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := listen(ctx, withConnectTimeout(dsn), fn)
		if ctx.Err() != nil {
			return
		}
		log.Warn("listen for changes; retrying", "err", err, "in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func listen(ctx context.Context, dsn string, fn func(topic string)) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+changes); err != nil {
		return err
	}
	fn(TopicReleases)
	fn(TopicSignatures)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		fn(n.Payload)
	}
}
