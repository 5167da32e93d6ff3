package repository

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

// devicePipeline writes device rounds (upsertStatement) on a PostgreSQL
// connection of its own in pipeline mode. A round is sent while the one
// before it is still committing, and PostgreSQL runs them back to back in
// the order sent, each in a transaction of its own, so the database need
// not wait for this process between two rounds. Each round asks for its rows
// (a Flush) before its commit (a Sync): its caller learns that the round
// executed while the commit's WAL flush is still under way, and can send the
// next one then; the round counts as written only at its ReadyForQuery.
//
// One goroutine per connection reads every answer, in order, and is the
// only one to settle a round. Any failure of the connection fails every
// round on it; the next round opens a new connection.
type devicePipeline struct {
	cfg   *pgconn.Config
	text  string
	named bool // prepared once per connection; else parsed with every round

	mu     sync.Mutex // serialises sends, guards conn and closed
	conn   *pipeConn
	closed bool
}

// pipeStatement names upsertStatement on the pipeline's connections.
const pipeStatement = "wemesse_device_upsert"

// maxRoundsInFlight bounds the rounds sent and not yet answered on one
// connection. The writers keep far fewer in flight: one executing and a few
// committing.
const maxRoundsInFlight = 1024

// roundOIDs are the types of upsertStatement's parameters, in order.
var roundOIDs = []uint32{pgtype.Int8ArrayOID, pgtype.TextArrayOID, pgtype.TextArrayOID, pgtype.TextArrayOID,
	pgtype.TextArrayOID, pgtype.TextArrayOID, pgtype.TextArrayOID, pgtype.Int8ArrayOID, pgtype.Int8ArrayOID,
	pgtype.TextArrayOID, pgtype.TextArrayOID, pgtype.TextArrayOID}

var binaryFormat = []int16{pgtype.BinaryFormatCode}

// newDevicePipeline prepares a pipeline for the statement text on the
// database dsn names; it connects on the first round. A DSN that asks pgx
// not to prepare statements (for a pooler in transaction mode) gets the
// statement parsed with every round instead.
func newDevicePipeline(dsn, text string) (*devicePipeline, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	named := cfg.DefaultQueryExecMode == pgx.QueryExecModeCacheStatement ||
		cfg.DefaultQueryExecMode == pgx.QueryExecModeCacheDescribe
	return &devicePipeline{cfg: &cfg.Config, text: text, named: named}, nil
}

type pipeConn struct {
	net   net.Conn
	send  *pgproto3.Frontend // under devicePipeline.mu
	recv  *pgproto3.Frontend // by the reader only
	types *pgtype.Map        // under devicePipeline.mu
	calls chan *round        // sent and not yet settled, in order
}

// round is one statement sent on the pipeline. The reader fills rows and
// execErr and closes executed, then sets commitErr and closes committed;
// a connection that fails first settles both with its error.
type round struct {
	conn                *pipeConn
	rows                map[device]int64
	execErr, commitErr  error
	executed, committed chan struct{}
}

// exec sends one round of args (upsertStatement's parameters) and waits
// until it has executed: its rows are then known, its commit still to come
// (commit waits for it). A round sent after exec returns commits after
// this one.
func (p *devicePipeline) exec(ctx context.Context, args []any) (*round, error) {
	r, err := p.send(ctx, args)
	if err != nil {
		return nil, err
	}
	r.wait(ctx, r.executed)
	if r.execErr != nil {
		return nil, r.execErr
	}
	return r, nil
}

// commit waits until r, which executed, has committed, or for the error
// that kept it from committing.
func (r *round) commit(ctx context.Context) error {
	r.wait(ctx, r.committed)
	return r.commitErr
}

// wait waits for ch to close. When ctx ends first it closes the connection,
// and the reader then fails every round on it, this one included.
func (r *round) wait(ctx context.Context, ch chan struct{}) {
	select {
	case <-ch:
	case <-ctx.Done():
		r.conn.net.Close()
		<-ch
	}
}

// send sends one round on the current connection, opening one if there is
// none, and leaves it to the connection's reader.
func (p *devicePipeline) send(ctx context.Context, args []any) (*round, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, net.ErrClosed
	}
	if p.conn == nil {
		c, err := p.connect(ctx)
		if err != nil {
			return nil, err
		}
		p.conn = c
		go p.read(c)
	}
	c := p.conn
	params := make([][]byte, len(args))
	for i, v := range args {
		b, err := c.types.Encode(roundOIDs[i], pgtype.BinaryFormatCode, v, nil)
		if err != nil {
			return nil, fmt.Errorf("encode parameter %d: %w", i+1, err)
		}
		params[i] = b
	}
	r := &round{conn: c, rows: map[device]int64{}, executed: make(chan struct{}), committed: make(chan struct{})}
	select {
	case c.calls <- r: // before its messages, so the reader finds it
	default:
		return nil, errors.New("too many device rounds in flight")
	}
	name := pipeStatement
	if !p.named {
		name = ""
		c.send.SendParse(&pgproto3.Parse{Query: p.text, ParameterOIDs: roundOIDs})
	}
	c.send.SendBind(&pgproto3.Bind{PreparedStatement: name, ParameterFormatCodes: binaryFormat,
		Parameters: params, ResultFormatCodes: binaryFormat})
	c.send.SendExecute(&pgproto3.Execute{})
	c.send.Send(&pgproto3.Flush{}) // the rows now, the commit after
	c.send.SendSync(&pgproto3.Sync{})
	d, _ := ctx.Deadline() // none: the zero time, no deadline
	c.net.SetWriteDeadline(d)
	if err := c.send.Flush(); err != nil {
		c.net.Close() // the reader fails r with the others
	}
	return r, nil
}

// connect opens a connection, prepares the statement on it and takes it
// over from pgconn for the pipeline's own reads and writes.
func (p *devicePipeline) connect(ctx context.Context) (*pipeConn, error) {
	pc, err := pgconn.ConnectConfig(ctx, p.cfg)
	if err != nil {
		return nil, err
	}
	if err := p.prepare(ctx, pc); err != nil {
		pc.Close(ctx)
		return nil, err
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, err
	}
	return &pipeConn{
		net:   hc.Conn,
		send:  pgproto3.NewFrontend(hc.Conn, hc.Conn),
		recv:  hc.Frontend,
		types: pgtype.NewMap(),
		calls: make(chan *round, maxRoundsInFlight),
	}, nil
}

// prepare readies a new connection: the statement prepared, when it is.
func (p *devicePipeline) prepare(ctx context.Context, pc *pgconn.PgConn) error {
	if !p.named {
		return nil // parsed and planned with every round
	}
	// A prepared statement soon runs on a generic plan, kept until the
	// next ANALYZE. Made while the table is tiny (a new install, or a few
	// rows just analyzed), it looks each device up by scanning the whole
	// table, which then grows under it: thousands of rows read per report
	// within a minute. The index is the only plan it may get. (The setting
	// is the session's: behind a transaction-mode pooler, which would pass
	// it on, docs/postgresql.md asks for the simple protocol, which skips
	// this.)
	if _, err := pc.Exec(ctx, "SET enable_seqscan = off").ReadAll(); err != nil {
		return err
	}
	_, err := pc.Prepare(ctx, pipeStatement, p.text, roundOIDs)
	return err
}

// read settles the rounds sent on c, in order, from the server's answers,
// until c fails; then it fails every round still on c.
func (p *devicePipeline) read(c *pipeConn) {
	var cur *round // the round the answers are about
	var err error
	for err == nil {
		var msg pgproto3.BackendMessage
		if msg, err = c.recv.Receive(); err != nil {
			break
		}
		switch msg.(type) {
		case *pgproto3.ParseComplete, *pgproto3.BindComplete, *pgproto3.NoticeResponse,
			*pgproto3.ParameterStatus, *pgproto3.NotificationResponse:
			continue
		}
		if cur == nil {
			select {
			case cur = <-c.calls:
			default:
				err = unasked(msg) // a FATAL error while idle: the server is going away
				continue
			}
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			err = cur.addRow(m.Values)
		case *pgproto3.CommandComplete:
			close(cur.executed)
		case *pgproto3.ErrorResponse:
			if m.Severity == "FATAL" || m.Severity == "PANIC" {
				err = pgconn.ErrorResponseToPgError(m) // the server ends the connection
				continue
			}
			if closed(cur.executed) {
				cur.commitErr = pgconn.ErrorResponseToPgError(m)
			} else {
				cur.execErr = pgconn.ErrorResponseToPgError(m)
				close(cur.executed)
			}
		case *pgproto3.ReadyForQuery:
			if !closed(cur.executed) { // never so: an Execute ends in a result or an error
				cur.execErr = errors.New("the server ended a device round without its result")
				close(cur.executed)
			}
			close(cur.committed)
			cur = nil
		}
	}
	p.mu.Lock() // no round is sent on c after this
	if p.conn == c {
		p.conn = nil
	}
	p.mu.Unlock()
	c.net.Close()
	if cur != nil {
		cur.fail(err)
	}
	for {
		select {
		case r := <-c.calls:
			r.fail(err)
		default:
			return
		}
	}
}

func unasked(msg pgproto3.BackendMessage) error {
	if m, ok := msg.(*pgproto3.ErrorResponse); ok {
		return pgconn.ErrorResponseToPgError(m)
	}
	return fmt.Errorf("unexpected %T from the server", msg)
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// fail settles what is left of r with err.
func (r *round) fail(err error) {
	if !closed(r.executed) {
		r.execErr = err
		close(r.executed)
	}
	if r.commitErr == nil {
		r.commitErr = err
	}
	close(r.committed)
}

// addRow records one row of upsertStatement (id, session_id, device_mac),
// in binary format.
func (r *round) addRow(v [][]byte) error {
	if len(v) != 3 || len(v[0]) != 8 || len(v[1]) != 8 {
		return errors.New("unexpected row from the device upsert")
	}
	k := device{int64(binary.BigEndian.Uint64(v[1])), string(v[2])}
	r.rows[k] = int64(binary.BigEndian.Uint64(v[0]))
	return nil
}

// Close closes the pipeline's connection, failing the rounds still on it.
func (p *devicePipeline) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.conn != nil {
		p.conn.net.Close()
	}
}
