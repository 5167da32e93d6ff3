package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"testing"
)

// TestNginxReference starts the nginx reference, when nginx is installed,
// and checks that it serves the bytes with their Content-Type on any path
// and writes an access line for every request.
func TestNginxReference(t *testing.T) {
	path, err := findTool("nginx", "nginx")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v; .ci/run installs it", err)
		}
		t.Skipf("%v; .ci/run installs it", err)
	}
	body := []byte(`{"version":"2267_00"}`)
	ng, err := startNginx(context.Background(), path, "application/json; charset=utf-8", body)
	if err != nil {
		t.Fatal(err)
	}
	defer ng.close()
	const n = 5
	for i := range n {
		resp, err := http.Get(ng.URL + "/api/v1/updates/2266_00?device=d" + string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != string(body) || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Fatalf("got %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), got)
		}
	}
	// The waitServing request, then ours; nginx writes each line as it
	// answers.
	if lines, err := ng.accessLines(); err != nil || lines != n+1 {
		t.Errorf("access log: %d lines (%v), want %d", lines, err, n+1)
	}
	dir := ng.dir
	ng.close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the prefix %s is left after close: %v", dir, err)
	}
}
