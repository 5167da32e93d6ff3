package handler

import (
	"io"
	"testing"
	"time"

	"github.com/wemesse/server/internal/model"
)

func BenchmarkConsoleReleasesRender(b *testing.B) {
	pages := consolePages()
	var a adoption
	var rows []releaseLine
	for i := range releasesPerPage {
		v, _ := model.ParseVersion("2264_0" + string(rune('0'+i%10)))
		rows = append(rows, a.line(model.Release{ID: int64(i), Version: v, Track: "stable", Rollout: 100, SizeText: "52.3 MB", CreatedAt: time.Now()}))
	}
	p := page{Title: "Releases", Nav: "releases", Data: releasesData{Rows: rows, Page: 1, Last: 10}}
	for b.Loop() {
		if err := pages["releases"].ExecuteTemplate(io.Discard, "layout", p); err != nil {
			b.Fatal(err)
		}
	}
}

func TestConsoleFormats(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {1000000, "1,000,000"}, {-1234567, "-1,234,567"}, {-12, "-12"}, {123456, "123,456"}} {
		if got := thousands(tt.n); got != tt.want {
			t.Errorf("thousands(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	for _, tt := range []struct {
		part, whole int64
		want        string
	}{{0, 0, "–"}, {1, 3, "33.3 %"}, {2, 3, "66.7 %"}, {3, 3, "100.0 %"}, {1, 2000, "0.1 %"}} {
		if got := percent(tt.part, tt.whole); got != tt.want {
			t.Errorf("percent(%d, %d) = %q, want %q", tt.part, tt.whole, got, tt.want)
		}
	}
	for state, want := range map[string]string{"live": "●", "halted": "‖", "scheduled": "◔", "yanked": "✕"} {
		if got := stateSymbol(state); got != want {
			t.Errorf("stateSymbol(%q) = %q, want %q", state, got, want)
		}
	}
}
