package handler_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/repository"
)

// updateScreenshots makes TestConsole_browser write its screenshots to
// docs/images, where the README shows them:
//
//	go test ./internal/handler -run TestConsole_browser/sqlite -screenshots
var updateScreenshots = flag.Bool("screenshots", false, "write the console's screenshots to docs/images")

// browserContext starts a headless Debian chromium with a fresh profile
// and returns a context for its first tab; the browser is closed when the
// test ends. Without chromium the test is skipped, except under CI=true,
// where that is a failure.
func browserContext(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		msg := "chromium is not installed (apt-get install chromium); the console's browser tests did not run"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel() // closes the tab and, being the first, the browser
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// TestConsole_browser drives the console in a real browser on both
// databases: log in, see the dashboard's chart drawn with the right
// series, fit a phone's width, upload a real APK with the progress bar
// reaching 100 %, change a rollout from the keyboard, halt and resume, and
// log out. It takes the README's
// screenshots on the way.
func TestConsole_browser(t *testing.T) {
	browser := browserContext(t)
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		ts.mustUpload("2268_00")
		ts.mustUpload("2269_01", "targetABI", "arm64", "rollout", "40")
		seedAdoption(t, ts)

		ctx, cancel := chromedp.NewContext(browser) // a tab of its own
		defer cancel()
		ctx, stop := context.WithTimeout(ctx, 90*time.Second)
		defer stop()
		run := func(step string, actions ...chromedp.Action[chromedp.Void]) {
			t.Helper()
			if err := chromedp.Do(ctx, actions...); err != nil {
				t.Fatalf("%s: %v", step, err)
			}
		}
		get := func(step string, a chromedp.Action[string]) string {
			t.Helper()
			v, err := chromedp.Run(ctx, a)
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			return v
		}

		run("log in",
			chromedp.Navigate(ts.URL+"/"),
			chromedp.WaitVisible(chromedp.ID("secret")),
			chromedp.SendKeys(chromedp.ID("secret"), ts.admin),
			chromedp.Submit(chromedp.ID("secret")),
			chromedp.WaitVisible(chromedp.CSS("#adoption-chart canvas")),
		)
		labels, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
			`Array.from(document.querySelectorAll("#adoption-chart .u-legend .u-series .u-label")).map(e => e.textContent)`))
		if err != nil {
			t.Fatalf("read the chart's legend: %v", err)
		}
		// The x series first, then the stack from its top: the release with
		// fewer devices is drawn above the one with more.
		if want := []string{"Time", "2268_00", "2269_01 arm64"}; !slices.Equal(labels, want) {
			t.Errorf("chart series %q, want %q", labels, want)
		}
		screenshot(t, ctx, "dashboard")

		// At a phone's width no page scrolls sideways: wide tables scroll
		// inside their own box.
		run("a phone's width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		for _, path := range []string{"/console/", "/console/releases", "/console/releases/2", "/console/upload", "/console/devices", "/console/secrets"} {
			run("open "+path+" on a phone", chromedp.Navigate(ts.URL+path), chromedp.WaitVisible(chromedp.CSS("main h1")))
			overflow, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.documentElement.scrollWidth - window.innerWidth`))
			if err != nil {
				t.Fatalf("measure %s: %v", path, err)
			}
			if overflow > 0 {
				t.Errorf("%s is %v px wider than a 390 px phone screen", path, overflow)
			}
		}
		run("a desk's width", chromedp.EmulateReset())

		apk, err := filepath.Abs("../../testdata/apk/good.apk")
		if err != nil {
			t.Fatal(err)
		}
		run("upload a real APK",
			chromedp.Navigate(ts.URL+"/console/upload"),
			chromedp.WaitVisible(chromedp.ID("appVersion")),
			chromedp.SendKeys(chromedp.ID("appVersion"), "2270_00"),
			chromedp.SetUploadFiles(chromedp.ID("tmpFile"), []string{apk}),
			chromedp.Click(chromedp.CSS(`#upload-form button[type="submit"]`)),
			chromedp.WaitVisible(chromedp.CSS("#upload-result .notice")),
		)
		progress, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.getElementById("upload-progress").value`))
		if err != nil {
			t.Fatalf("read the progress bar: %v", err)
		}
		if percent := get("read the progress text", chromedp.Text(chromedp.ID("upload-percent"))); progress != 100 || percent != "100 %" {
			t.Errorf("after the upload the progress bar shows %v (%q), want 100 (100 %%)", progress, percent)
		}

		run("change a rollout from the keyboard",
			chromedp.Click(chromedp.CSS("#upload-result .notice a")),
			chromedp.WaitVisible(chromedp.ID("rollout")),
			chromedp.Focus(chromedp.ID("rollout")),
			chromedp.KeyEvent(strings.Repeat(kb.ArrowLeft, 75)),
		)
		rollout := get("read the slider", chromedp.Text(chromedp.ID("rollout-value")))
		if rollout != "25" {
			t.Errorf("the slider's read-out shows %q after 75 presses of ←, want 25", rollout)
		}
		run("save the rollout",
			chromedp.Click(chromedp.CSS(`form[action$="/rollout"] button`)),
			chromedp.WaitVisible(chromedp.CSS(".notice")),
		)
		if _, api := ts.do("GET", "/api/v1/updates", ts.admin, nil); !strings.Contains(string(api), `"Version":"2270_00","Skipped":false,`) || !strings.Contains(string(api), `"Rollout":25`) {
			t.Errorf("the API does not show the uploaded release at 25 %%: %s", api)
		}

		var state string
		run("halt",
			chromedp.Click(chromedp.ID("halt")),
			chromedp.WaitVisible(chromedp.ID("resume")),
		)
		state = get("read the state", chromedp.Text(chromedp.CSS(".facts .badge")))
		if state != "‖ halted" {
			t.Errorf("after halting the state reads %q, want ‖ halted", state)
		}
		run("resume",
			chromedp.Click(chromedp.ID("resume")),
			chromedp.WaitVisible(chromedp.ID("halt")),
		)
		if state = get("read the state", chromedp.Text(chromedp.CSS(".facts .badge"))); state != "● live" {
			t.Errorf("after resuming the state reads %q, want ● live", state)
		}
		if _, api := ts.do("GET", "/api/v1/updates", ts.admin, nil); !strings.Contains(string(api), `"Halted":false`) || strings.Contains(string(api), `"Halted":true`) {
			t.Errorf("after halt and resume the API shows: %s", api)
		}

		run("open a release with history", chromedp.Navigate(ts.URL+"/console/releases/2"), chromedp.WaitVisible(chromedp.CSS("#release-chart canvas")))
		screenshot(t, ctx, "release")

		run("log out",
			chromedp.Click(chromedp.CSS(".logout button")),
			chromedp.WaitVisible(chromedp.ID("secret")),
			chromedp.Navigate(ts.URL+"/console/releases"),
			chromedp.WaitVisible(chromedp.ID("secret")),
		)
		nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("nav"), chromedp.AtLeast(0)))
		if err != nil {
			t.Fatalf("look for the navigation: %v", err)
		}
		if len(nodes) != 0 {
			t.Errorf("after logging out the console still shows its navigation")
		}
	})
}

// seedAdoption records 60 days of history for the two releases and
// reports devices on them today, so the charts have something to draw.
func seedAdoption(t *testing.T, ts *testServer) {
	t.Helper()
	ctx := context.Background()
	history := repository.NewHistory(ts.db)
	today := model.Day(time.Now())
	for d := 60; d >= 1; d-- {
		// The devices grow to today's 30; 2269_01 takes over from day 30.
		total := min(30, 12+(60-d)*3/10)
		newer := 0
		if d < 30 {
			newer = 20 * (30 - d) / 30
		}
		rows := []model.ReleaseDay{
			{ReleaseID: 1, Version: "2268_00", Devices: int64(total - newer), Active30d: int64(total - newer), Downloads: int64(total)},
			{ReleaseID: 2, Version: "2269_01", TargetABI: "arm64", Devices: int64(newer), Active30d: int64(newer), Downloads: int64(newer)},
		}
		if err := history.SaveDay(ctx, today.AddDate(0, 0, -d), rows); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().Unix()
	for i := range 30 {
		version := "2268_00"
		if i%3 != 0 {
			version = "2269_01arm64"
		}
		body := fmt.Sprintf(`{"SessionID": %d, "AppVersion": %q, "DeviceMac": "m%d", "DeviceModel": "Pixel", "SessionActivity": %d, "SessionRegister": %d}`, i+1, version, i, now, now)
		if resp, b := ts.do("POST", "/api/v1/users", ts.client, strings.NewReader(body)); resp.StatusCode != 200 {
			t.Fatalf("report: %d %s", resp.StatusCode, b)
		}
	}
}

// screenshot captures the whole page; with -screenshots it becomes
// docs/images/console-<name>.png.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if len(png) < 1000 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot %s: %d bytes, not a PNG", name, len(png))
	}
	if *updateScreenshots {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "images", "console-"+name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
