package handler_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/handler"
	"github.com/wemesse/server/internal/httpsig"
	"github.com/wemesse/server/internal/service"
)

// newAnswerKey returns a new Ed25519 key as the server loads one.
func newAnswerKey(tb testing.TB) httpsig.Key {
	tb.Helper()
	pem, err := httpsig.NewKeyPEM()
	if err != nil {
		tb.Fatal(err)
	}
	k, err := httpsig.ParseKeyPEM(pem)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// withAnswerKeys signs answers with current and publishes retired too.
func withAnswerKeys(tb testing.TB, current httpsig.Key, retired ...httpsig.Key) serverOption {
	return func(d *handler.Deps, _ *service.SignaturesConfig) {
		s, err := httpsig.NewSigner(current, 24*time.Hour)
		if err != nil {
			tb.Fatal(err)
		}
		d.AnswerSigner, d.AnswerKeys = s, append([]httpsig.Key{current}, retired...)
	}
}

// TestUpdateCheck_signed verifies answers with the procedure clients follow
// (httpsig.Verify) and the keys the server publishes.
func TestUpdateCheck_signed(t *testing.T) {
	current, retired, stranger := newAnswerKey(t), newAnswerKey(t), newAnswerKey(t)
	ts := newTestServer(t, dbtest.SQLite(t), withAnswerKeys(t, current, retired))
	ts.mustUpload("2264_00")
	ts.mustUpload("2265_01")

	resp, body := ts.do("GET", "/api/v1/keys", "", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("keys: status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	keys, err := httpsig.ParseJWKSet(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[current.ID] == nil || keys[retired.ID] == nil || !strings.Contains(string(body), `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"`+current.ID+`"`) {
		t.Fatalf("keys = %s, want the current key %s first, then %s", body, current.ID, retired.ID)
	}

	// Two different answers: the first must update (2264_00 is mandatory),
	// the second may skip.
	respA, bodyA := ts.do("GET", "/api/v1/updates/2263_00", "", nil)
	respB, bodyB := ts.do("GET", "/api/v1/updates/2264_00", "", nil)
	if respA.StatusCode != 200 || respB.StatusCode != 200 || string(bodyA) == string(bodyB) {
		t.Fatalf("answers: %d %s, %d %s; want two different 200s", respA.StatusCode, bodyA, respB.StatusCode, bodyB)
	}
	p, err := httpsig.Verify(200, respA.Header, bodyA, keys, time.Now(), time.Time{})
	if err != nil {
		t.Fatalf("good answer: %v", err)
	}
	if p.KeyID != current.ID || p.Expires.Sub(p.Created) != 24*time.Hour || time.Since(p.Created) > time.Minute {
		t.Errorf("params %+v, want kid %s, a fresh created and expires 24h later", p, current.ID)
	}

	swap := func(h http.Header, name string, from http.Header) http.Header {
		h = h.Clone()
		h[name] = from[name]
		return h
	}
	changed := append([]byte(nil), bodyA...)
	changed[len(changed)/2] ^= 1
	tests := []struct {
		name   string
		status int
		header http.Header
		body   []byte
		keys   httpsig.KeySet
		now    time.Time
		since  time.Time
		want   error
	}{
		{"good answer", 200, respA.Header, bodyA, keys, time.Now(), time.Time{}, nil},
		{"the other good answer", 200, respB.Header, bodyB, keys, time.Now(), p.Created, nil},
		{"one body byte changed", 200, respA.Header, changed, keys, time.Now(), time.Time{}, httpsig.ErrDigest},
		{"body of the other answer", 200, respA.Header, bodyB, keys, time.Now(), time.Time{}, httpsig.ErrDigest},
		{"Content-Digest swapped", 200, swap(respA.Header, "Content-Digest", respB.Header), bodyB, keys, time.Now(), time.Time{}, httpsig.ErrBadSignature},
		{"Signature swapped", 200, swap(respA.Header, "Signature", respB.Header), bodyA, keys, time.Now(), time.Time{}, httpsig.ErrBadSignature},
		{"other status", 304, respA.Header, bodyA, keys, time.Now(), time.Time{}, httpsig.ErrBadSignature},
		{"expired", 200, respA.Header, bodyA, keys, p.Expires, time.Time{}, httpsig.ErrExpired},
		{"key not in the set", 200, respA.Header, bodyA, httpsig.KeySet{stranger.ID: stranger.Public, retired.ID: retired.Public}, time.Now(), time.Time{}, httpsig.ErrUnknownKey},
		{"older than the last accepted", 200, respA.Header, bodyA, keys, time.Now(), p.Created.Add(time.Second), httpsig.ErrReplayed},
		{"unsigned", 200, http.Header{"Content-Digest": respA.Header["Content-Digest"]}, bodyA, keys, time.Now(), time.Time{}, httpsig.ErrMissing},
		{"malformed", 200, swap(respA.Header, "Signature-Input", http.Header{"Signature-Input": {`wemesse=("@status");created=1`}}), bodyA, keys, time.Now(), time.Time{}, httpsig.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := httpsig.Verify(tt.status, tt.header, tt.body, tt.keys, tt.now, tt.since)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("304 carries no signature", func(t *testing.T) {
		resp, _ := ts.do("GET", "/api/v1/updates/2263_00", "", nil, "If-None-Match", respA.Header.Get("ETag"))
		if resp.StatusCode != 304 || resp.Header.Get("Signature") != "" || resp.Header.Get("Content-Digest") != "" {
			t.Errorf("status %d, headers %v; want 304 without signature headers", resp.StatusCode, resp.Header)
		}
	})
}

func TestUpdateCheck_unsigned(t *testing.T) {
	ts := newTestServer(t, dbtest.SQLite(t))
	ts.mustUpload("2264_00")
	resp, _ := ts.do("GET", "/api/v1/updates/2263_00", "", nil)
	for _, h := range []string{"Content-Digest", "Signature-Input", "Signature"} {
		if resp.Header.Get(h) != "" {
			t.Errorf("%s = %q without a key, want none", h, resp.Header.Get(h))
		}
	}
	resp, body := ts.do("GET", "/api/v1/keys", "", nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"keys":[]}` {
		t.Errorf("keys: %d %s, want 200 and an empty set", resp.StatusCode, body)
	}
}
