package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// storedBuild is a release uploaded with 201 whose content the tool knows.
type storedBuild struct {
	version, name string
	size          int64
	md5           string
	id            int64
}

// uploadKnown uploads builds held in memory and checks each 201.
func (rg *rig) uploadKnown(ctx context.Context, builds []storedBuild, seed uint64) ([]storedBuild, error) {
	h := rg.h
	var out []storedBuild
	var names []string
	for i, b := range builds {
		data, sum := randomData(seed+uint64(i), int(b.size))
		r, rel := upload(ctx, rg.c, rg.s.URL, h.admin, b.version, "", b.name, data)
		if r.status != http.StatusCreated || rel.Checksum != sum {
			h.fail("setup: upload %s (%s): %s, checksum %s, want %s", b.version, mib(b.size), r.describe(), rel.Checksum, sum)
			return nil, errors.New("setup failed")
		}
		b.md5, b.id = sum, rel.ID
		out = append(out, b)
		names = append(names, fmt.Sprintf("%s/%s (%s)", b.version, b.name, mib(b.size)))
	}
	h.pass("setup: uploaded %s; each answered 201 with the MD5 computed here", strings.Join(names, ", "))
	return out, nil
}

// verifyIntact checks that each build has its row (SQL and API) and its
// file, on disk and downloaded, with the right size and MD5.
func (rg *rig) verifyIntact(ctx context.Context, builds []storedBuild) error {
	h, c, s := rg.h, rg.c, rg.s
	conn, err := rg.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var apiRels []releaseJSON
	if err := getJSON(ctx, c, s.URL+"/api/v1/updates", h.admin, &apiRels); err != nil {
		h.fail("API: GET /api/v1/updates: %v", err)
	}
	for _, b := range builds {
		var sum, path string
		var size int64
		err := conn.QueryRow(ctx, "SELECT COALESCE(app_checksum, ''), COALESCE(size_bytes, 0), COALESCE(file_path, '') FROM apps WHERE app_version = $1 AND COALESCE(target_abi, '') = ''",
			b.version).Scan(&sum, &size, &path)
		rowOK := err == nil && sum == b.md5 && size == b.size && path == b.version+"/"+b.name
		apiOK := false
		for _, r := range apiRels {
			if r.Version == b.version && r.ID == b.id && r.Checksum == b.md5 {
				apiOK = true
			}
		}
		diskSize, diskSum, derr := fileMD5(releaseFile(s.UploadDir(), b.version, b.name))
		status, dlSize, dlSum, dlErr := download(ctx, c, s.URL+"/uploads/"+b.version+"/"+b.name)
		h.check(rowOK && apiOK && derr == nil && diskSize == b.size && diskSum == b.md5 && dlErr == nil && status == 200 && dlSize == b.size && dlSum == b.md5,
			"release %s intact: SQL row (md5, size, path) %t, in the API list %t, file on disk %s md5 %s, download %d of %s md5 %s (want %s %s)",
			b.version, rowOK, apiOK, mib(diskSize), short(diskSum), status, mib(dlSize), short(dlSum), mib(b.size), short(b.md5))
	}
	return nil
}

// verifyGone checks that an interrupted upload left nothing: no row (SQL
// and API), no file or directory for its version, not downloadable, and an
// empty staging directory.
func (rg *rig) verifyGone(ctx context.Context, version, name string) error {
	h, c, s := rg.h, rg.c, rg.s
	conn, err := rg.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM apps WHERE app_version = $1", version).Scan(&n); err != nil {
		return err
	}
	h.check(n == 0, "SQL: no row for %s (%d found)", version, n)
	var apiRels []releaseJSON
	if err := getJSON(ctx, c, s.URL+"/api/v1/updates", h.admin, &apiRels); err != nil {
		h.fail("API: GET /api/v1/updates: %v", err)
	} else {
		listed := false
		for _, r := range apiRels {
			listed = listed || r.Version == version
		}
		h.check(!listed, "API: %s is not in the release list (%d releases listed)", version, len(apiRels))
	}
	dir := releaseFile(s.UploadDir(), version, "")
	h.check(!exists(dir), "disk: nothing at %s", strings.TrimPrefix(dir, h.base+"/"))
	r := do(ctx, c, "GET", s.URL+"/uploads/"+version+"/"+name, "", "", nil, 10*time.Second)
	h.check(r.status == http.StatusNotFound, "GET /uploads/%s/%s answers 404 (got %s)", version, name, r.describe())
	staged, err := dirEntries(s.StagingDir())
	h.check(err == nil && len(staged) == 0, "disk: the staging directory is empty (%v)", staged)
	return nil
}

// short abbreviates a hex digest.
func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12] + "…"
	}
	if sum == "" {
		return "-"
	}
	return sum
}

// kill9Upload is the upload the kill -9 interrupts.
const kill9Version, kill9Name = "4000_09", "big.apk"

func runKill9(ctx context.Context, h *harness) error {
	rg, err := h.newRig(ctx, "kill9", false, nil)
	if err != nil {
		return err
	}
	defer rg.close()
	h.info("server pid %d on %s, database %s", rg.s.Pid(), rg.s.URL, rg.db)
	builds, err := rg.uploadKnown(ctx, []storedBuild{
		{version: "4000_01", name: "first.apk", size: 1 << 20},
		{version: "4000_02", name: "second.apk", size: 3<<20 + 17},
		{version: "4000_03", name: "third.apk", size: 7<<20 + 1},
	}, 400)
	if err != nil {
		return err
	}
	if err := kill9Inject(ctx, rg); err != nil {
		return err
	}
	return kill9Verify(ctx, rg, builds)
}

// kill9Inject kills the server with SIGKILL in the middle of an upload
// and checks what the client and the disk were left with.
func kill9Inject(ctx context.Context, rg *rig) error {
	h, s := rg.h, rg.s
	size := int64(64 << 20)
	rate := float64(8 << 20) // 8 s for the whole file: it cannot finish before the kill
	up := startStreamUpload(ctx, rg.c, s.URL, h.admin, kill9Version, kill9Name, size, rate, 409)
	staged, stagedSize, err := waitStaged(ctx, s.StagingDir(), 16<<20, 15*time.Second, up)
	if err != nil {
		return err
	}
	sent := up.sent.Load()
	h.inject("kill -9 the server (pid %d) while it receives %s (%s of %s sent at %s/s; staged file %s holds %s)",
		s.Pid(), kill9Version, mib(sent), mib(size), mib(int64(rate)), staged, mib(stagedSize))
	if err := s.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if !s.WaitExit(10 * time.Second) {
		return errors.New("the server did not die of SIGKILL within 10s")
	}
	h.check(sent < size, "the upload was cut mid-way: %s of %s had been sent", mib(sent), mib(size))
	r, ok := up.wait(10 * time.Second)
	h.check(ok && r.status == 0, "the client of the killed upload got no response, only a dropped connection (%s)", r.describe())
	left, _ := dirEntries(s.StagingDir())
	h.check(len(left) > 0, "the crash left the staged file behind for the next start to remove (%v)", left)
	return nil
}

// kill9Verify restarts the server and checks that the interrupted upload
// left nothing and the earlier builds are intact.
func kill9Verify(ctx context.Context, rg *rig, builds []storedBuild) error {
	h, s := rg.h, rg.s
	h.inject("restart the server with the same settings")
	if err := s.Restart(ctx); err != nil {
		return err
	}
	h.info("server pid %d", s.Pid())
	h.check(s.WaitLog("removed staged files left by an interrupted upload", 5*time.Second),
		"the restarted server logged that it removed the staged file of the interrupted upload")
	if err := rg.verifyGone(ctx, kill9Version, kill9Name); err != nil {
		return err
	}
	if err := rg.verifyIntact(ctx, builds); err != nil {
		return err
	}
	data, sum := randomData(419, 256<<10)
	r, rel := upload(ctx, rg.c, s.URL, h.admin, kill9Version, "", kill9Name, data)
	h.check(r.status == http.StatusCreated && rel.Checksum == sum, "the interrupted version %s can be uploaded again: %s", kill9Version, r.describe())
	rg.verifyNoErrors()
	return nil
}

// firstLine formats the first of some lines as an example.
func firstLine(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return "; e.g. " + lines[0]
}
