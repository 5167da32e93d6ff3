package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// exitSlack is how long past its shutdown deadline the server may take to
// exit: connections are closed, cut-off handlers clean up, staging is swept.
const exitSlack = 5 * time.Second

func runSigterm(ctx context.Context, h *harness) error {
	const db = "faults_sigterm"
	if err := h.pg.CreateDB(ctx, db); err != nil {
		return err
	}
	longTO, cutTO := h.opts.longShutdown, h.opts.cutShutdown
	s, err := h.startServer(ctx, "sigterm", db, map[string]string{"WEMESSE_SHUTDOWN_TIMEOUT": longTO.String()})
	if err != nil {
		return err
	}
	defer s.stop()
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	h.info("server pid %d on %s, database %s, WEMESSE_SHUTDOWN_TIMEOUT=%s", s.pid(), s.URL, db, longTO)

	size := int64(100 << 20)
	if h.opts.quick {
		size = 48 << 20
	}

	// (a) An upload that fits in the shutdown timeout completes.
	const versionA, nameA = "5000_01", "graceful.apk"
	rateA := float64(size) / 5 // five seconds, well inside the timeout
	up := startStreamUpload(ctx, c, s.URL, h.admin, versionA, nameA, size, rateA, 501)
	if _, _, err := waitStaged(ctx, s.stagingDir(), 1<<20, 15*time.Second, up); err != nil {
		return err
	}
	for up.sent.Load() < size/4 && sleepCtx(ctx, 10*time.Millisecond) == nil {
	}
	sent := up.sent.Load()
	sigAt := time.Now()
	h.inject("(a) SIGTERM to the server (pid %d) with %s of a %s upload of %s sent at %s/s; the shutdown timeout is %s",
		s.pid(), mib(sent), mib(size), versionA, mib(int64(rateA)), longTO)
	if err := s.signal(syscall.SIGTERM); err != nil {
		return err
	}
	var dialErr error
	for time.Since(sigAt) < 3*time.Second {
		conn, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err != nil {
			dialErr = err
			break
		}
		conn.Close()
		time.Sleep(20 * time.Millisecond)
	}
	refusedAfter := time.Since(sigAt)
	h.check(dialErr != nil && up.sent.Load() < size, "(a) the server stopped accepting: %s after SIGTERM, while the upload still runs (%s sent), a new connection is refused (%v)",
		refusedAfter.Round(time.Millisecond), mib(up.sent.Load()), dialErr)
	r, ok := up.wait(longTO + exitSlack)
	var rel releaseJSON
	if ok && r.status == http.StatusCreated {
		json.Unmarshal(r.body, &rel)
	}
	sum := up.md5()
	h.check(ok && r.status == http.StatusCreated && rel.Checksum == sum && sum != "",
		"(a) the in-flight upload completed: 201 after %s, checksum %s matches the %s sent (%s)",
		r.end.Sub(sigAt).Round(time.Millisecond), short(rel.Checksum), mib(size), r.describe())
	exited := s.waitExit(longTO + exitSlack - time.Since(sigAt))
	h.check(exited && s.exitErr == nil && s.exitedAt.Sub(sigAt) < longTO,
		"(a) the server exited cleanly (%s) %s after SIGTERM, once the upload was done, inside the %s timeout",
		s.exitDescription(), s.exitedAt.Sub(sigAt).Round(time.Millisecond), longTO)
	if !exited {
		return errors.New("the server did not exit")
	}
	diskSize, diskSum, derr := fileMD5(releaseFile(s.uploadDir(), versionA, nameA))
	staged, _ := dirEntries(s.stagingDir())
	h.check(derr == nil && diskSize == size && diskSum == sum && len(staged) == 0,
		"(a) after exit: the file is on disk with %s, md5 %s; staging is empty (%v)", mib(diskSize), short(diskSum), staged)

	h.inject("restart the server with WEMESSE_SHUTDOWN_TIMEOUT=%s", cutTO)
	s.settings["WEMESSE_SHUTDOWN_TIMEOUT"] = cutTO.String()
	if err := s.start(ctx); err != nil {
		return err
	}
	h.info("server pid %d", s.pid())
	buildA := storedBuild{version: versionA, name: nameA, size: size, md5: sum, id: rel.ID}
	if err := verifyIntact(ctx, h, c, s, db, []storedBuild{buildA}); err != nil {
		return err
	}

	// (b) An upload longer than the shutdown timeout is cut off.
	const versionB, nameB = "5000_02", "cutoff.apk"
	rateB := float64(2 << 20) // far too slow to finish
	up = startStreamUpload(ctx, c, s.URL, h.admin, versionB, nameB, size, rateB, 502)
	if _, _, err := waitStaged(ctx, s.stagingDir(), 1<<20, 15*time.Second, up); err != nil {
		return err
	}
	sigAt = time.Now()
	h.inject("(b) SIGTERM to the server (pid %d) with %s of a %s upload of %s sent at %s/s; the shutdown timeout is %s",
		s.pid(), mib(up.sent.Load()), mib(size), versionB, mib(int64(rateB)), cutTO)
	if err := s.signal(syscall.SIGTERM); err != nil {
		return err
	}
	exited = s.waitExit(cutTO + exitSlack + 10*time.Second)
	took := s.exitedAt.Sub(sigAt)
	h.check(exited && s.exitErr == nil && took <= cutTO+exitSlack,
		"(b) the server exited cleanly (%s) %s after SIGTERM (timeout %s, bound %s)", s.exitDescription(), took.Round(time.Millisecond), cutTO, cutTO+exitSlack)
	if !exited {
		return errors.New("the server did not exit")
	}
	r, ok = up.wait(5 * time.Second)
	h.check(ok && r.status != http.StatusCreated, "(b) the cut-off upload did not succeed: %s after %s of %s", r.describe(), mib(up.sent.Load()), mib(size))
	staged, _ = dirEntries(s.stagingDir())
	h.check(len(staged) == 0 && !exists(releaseFile(s.uploadDir(), versionB, "")),
		"(b) after exit, before any restart: staging is empty (%v) and nothing exists for %s", staged, versionB)
	h.check(strings.Contains(s.logText(), "shutdown cut off requests still running"), "(b) the server logged that the shutdown cut off a request")

	h.inject("restart the server")
	s.settings["WEMESSE_SHUTDOWN_TIMEOUT"] = longTO.String()
	if err := s.start(ctx); err != nil {
		return err
	}
	h.info("server pid %d", s.pid())
	if err := verifyGone(ctx, h, c, s, db, versionB, nameB); err != nil {
		return err
	}
	if err := verifyIntact(ctx, h, c, s, db, []storedBuild{buildA}); err != nil {
		return err
	}
	errs := s.errorLines()
	h.check(len(errs) == 0, "the last server run logged no ERROR and no panic (%d such lines)%s", len(errs), firstLine(errs))
	return nil
}
