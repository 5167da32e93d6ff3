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
	longTO := h.opts.longShutdown
	rg, err := h.newRig(ctx, "sigterm", false, map[string]string{"WEMESSE_SHUTDOWN_TIMEOUT": longTO.String()})
	if err != nil {
		return err
	}
	defer rg.close()
	h.info("server pid %d on %s, database %s, WEMESSE_SHUTDOWN_TIMEOUT=%s", rg.s.Pid(), rg.s.URL, rg.db, longTO)
	size := int64(100 << 20)
	if h.opts.quick {
		size = 48 << 20
	}
	buildA, err := sigtermGraceful(ctx, rg, size)
	if err != nil {
		return err
	}
	return sigtermCutOff(ctx, rg, size, buildA)
}

// sigtermGraceful sends SIGTERM during an upload that fits in the shutdown
// timeout, checks that it completes, and restarts the server with the short
// timeout.
func sigtermGraceful(ctx context.Context, rg *rig, size int64) (storedBuild, error) {
	h, c, s := rg.h, rg.c, rg.s
	longTO, cutTO := h.opts.longShutdown, h.opts.cutShutdown
	// (a) An upload that fits in the shutdown timeout completes.
	const versionA, nameA = "5000_01", "graceful.apk"
	rateA := float64(size) / 5 // five seconds, well inside the timeout
	up := startStreamUpload(ctx, c, s.URL, h.admin, versionA, nameA, size, rateA, 501)
	if _, _, err := waitStaged(ctx, s.StagingDir(), 1<<20, 15*time.Second, up); err != nil {
		return storedBuild{}, err
	}
	for up.sent.Load() < size/4 && sleepCtx(ctx, 10*time.Millisecond) == nil {
	}
	sent := up.sent.Load()
	sigAt := time.Now()
	h.inject("(a) SIGTERM to the server (pid %d) with %s of a %s upload of %s sent at %s/s; the shutdown timeout is %s",
		s.Pid(), mib(sent), mib(size), versionA, mib(int64(rateA)), longTO)
	if err := s.Signal(syscall.SIGTERM); err != nil {
		return storedBuild{}, err
	}
	var dialErr error
	for time.Since(sigAt) < 3*time.Second {
		conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
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
	exited := s.WaitExit(longTO + exitSlack - time.Since(sigAt))
	h.check(exited && s.ExitErr() == nil && s.ExitedAt().Sub(sigAt) < longTO,
		"(a) the server exited cleanly (%s) %s after SIGTERM, once the upload was done, inside the %s timeout",
		s.ExitDescription(), s.ExitedAt().Sub(sigAt).Round(time.Millisecond), longTO)
	if !exited {
		return storedBuild{}, errors.New("the server did not exit")
	}
	diskSize, diskSum, derr := fileMD5(releaseFile(s.UploadDir(), versionA, nameA))
	staged, _ := dirEntries(s.StagingDir())
	h.check(derr == nil && diskSize == size && diskSum == sum && len(staged) == 0,
		"(a) after exit: the file is on disk with %s, md5 %s; staging is empty (%v)", mib(diskSize), short(diskSum), staged)

	h.inject("restart the server with WEMESSE_SHUTDOWN_TIMEOUT=%s", cutTO)
	s.Set("WEMESSE_SHUTDOWN_TIMEOUT", cutTO.String())
	if err := s.Restart(ctx); err != nil {
		return storedBuild{}, err
	}
	h.info("server pid %d", s.Pid())
	buildA := storedBuild{version: versionA, name: nameA, size: size, md5: sum, id: rel.ID}
	return buildA, rg.verifyIntact(ctx, []storedBuild{buildA})
}

// sigtermCutOff sends SIGTERM during an upload longer than the shutdown
// timeout, checks that it is cut off and leaves nothing, and that buildA,
// complete before, is intact.
func sigtermCutOff(ctx context.Context, rg *rig, size int64, buildA storedBuild) error {
	h, c, s := rg.h, rg.c, rg.s
	longTO, cutTO := h.opts.longShutdown, h.opts.cutShutdown
	const versionB, nameB = "5000_02", "cutoff.apk"
	rateB := float64(2 << 20) // far too slow to finish
	up := startStreamUpload(ctx, c, s.URL, h.admin, versionB, nameB, size, rateB, 502)
	if _, _, err := waitStaged(ctx, s.StagingDir(), 1<<20, 15*time.Second, up); err != nil {
		return err
	}
	sigAt := time.Now()
	h.inject("(b) SIGTERM to the server (pid %d) with %s of a %s upload of %s sent at %s/s; the shutdown timeout is %s",
		s.Pid(), mib(up.sent.Load()), mib(size), versionB, mib(int64(rateB)), cutTO)
	if err := s.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	exited := s.WaitExit(cutTO + exitSlack + 10*time.Second)
	took := s.ExitedAt().Sub(sigAt)
	h.check(exited && s.ExitErr() == nil && took <= cutTO+exitSlack,
		"(b) the server exited cleanly (%s) %s after SIGTERM (timeout %s, bound %s)", s.ExitDescription(), took.Round(time.Millisecond), cutTO, cutTO+exitSlack)
	if !exited {
		return errors.New("the server did not exit")
	}
	r, ok := up.wait(5 * time.Second)
	h.check(ok && r.status != http.StatusCreated, "(b) the cut-off upload did not succeed: %s after %s of %s", r.describe(), mib(up.sent.Load()), mib(size))
	staged, _ := dirEntries(s.StagingDir())
	h.check(len(staged) == 0 && !exists(releaseFile(s.UploadDir(), versionB, "")),
		"(b) after exit, before any restart: staging is empty (%v) and nothing exists for %s", staged, versionB)
	h.check(strings.Contains(s.Log(), "shutdown cut off requests still running"), "(b) the server logged that the shutdown cut off a request")

	h.inject("restart the server")
	s.Set("WEMESSE_SHUTDOWN_TIMEOUT", longTO.String())
	if err := s.Restart(ctx); err != nil {
		return err
	}
	h.info("server pid %d", s.Pid())
	if err := rg.verifyGone(ctx, versionB, nameB); err != nil {
		return err
	}
	if err := rg.verifyIntact(ctx, []storedBuild{buildA}); err != nil {
		return err
	}
	rg.verifyNoErrors()
	return nil
}
