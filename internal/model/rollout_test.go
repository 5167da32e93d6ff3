package model

import (
	"crypto/sha256"
	"fmt"
	"math/big"
	"testing"
)

func TestBucket_distributionAndStability(t *testing.T) {
	v := mustVersion(t, "2267_01")
	r := Release{Version: v, Rollout: 10, Track: DefaultTrack}
	in := 0
	for i := range 10000 {
		device := fmt.Sprint(i + 1)
		offered := r.OfferedTo(stableClient("arm64", device))
		if offered {
			in++
		}
		for range 3 {
			if r.OfferedTo(stableClient("arm64", device)) != offered {
				t.Fatalf("device %s got different answers", device)
			}
		}
	}
	if in < 700 || in > 1300 {
		t.Errorf("a 10%% rollout reached %d of 10000 devices, want 1000 ± 300", in)
	}
	t.Logf("a 10%% rollout reached %d of 10000 devices", in)
}

func TestBucket_raisingRolloutKeepsDevices(t *testing.T) {
	v := mustVersion(t, "3_01")
	for i := range 2000 {
		device := fmt.Sprint("device-", i)
		b := Bucket(device, v)
		if b < 0 || b > 99 {
			t.Fatalf("Bucket = %d, want 0..99", b)
		}
		for r := 1; r < FullRollout; r++ {
			low, high := Release{Version: v, Rollout: r, Track: DefaultTrack}, Release{Version: v, Rollout: r + 1, Track: DefaultTrack}
			if low.OfferedTo(stableClient("arm", device)) && !high.OfferedTo(stableClient("arm", device)) {
				t.Fatalf("raising rollout %d→%d hid the release from %s", r, r+1, device)
			}
		}
	}
}

// TestBucket_documented pins the formula clients and ops may compute:
// big-endian uint64 of the first 8 bytes of SHA-256("<device>:<version>"),
// modulo 100.
func TestBucket_documented(t *testing.T) {
	tests := []struct {
		device, version string
		want            int
	}{
		{"1", "2267_01", bucketOf("1:2267_01")},
		{"42", "2269_01", bucketOf("42:2269_01")},
		{"02:30:54:89:2d:5e", "1_0", bucketOf("02:30:54:89:2d:5e:1_0")},
	}
	for _, tt := range tests {
		if got := Bucket(tt.device, mustVersion(t, tt.version)); got != tt.want {
			t.Errorf("Bucket(%q, %s) = %d, want %d", tt.device, tt.version, got, tt.want)
		}
	}
}

func TestRelease_OfferedTo(t *testing.T) {
	v := mustVersion(t, "5_01")
	inside, outside := deviceWithBucket(t, v, 0, 9), deviceWithBucket(t, v, 10, 99)
	tests := []struct {
		name   string
		r      Release
		abi    string
		device string
		sdk    int
		want   bool
	}{
		{"universal, full", Release{Version: v, Rollout: 100}, "x86", "", 0, true},
		{"legacy row without rollout", Release{Version: v}, "x86", "", 0, true},
		{"other ABI", Release{Version: v, Rollout: 100, TargetABI: "arm"}, "arm64", inside, 0, false},
		{"own ABI", Release{Version: v, Rollout: 100, TargetABI: "arm64"}, "arm64", "", 0, true},
		{"yanked", Release{Version: v, Rollout: 100, Yanked: true}, "arm64", inside, 0, false},
		{"halted", Release{Version: v, Rollout: 100, Halted: true}, "arm64", inside, 0, false},
		{"halted, device inside a partial rollout", Release{Version: v, Rollout: 10, Halted: true}, "arm64", inside, 0, false},
		{"partial without device", Release{Version: v, Rollout: 10}, "arm64", "", 0, false},
		{"partial, device inside", Release{Version: v, Rollout: 10}, "arm64", inside, 0, true},
		{"partial, device outside", Release{Version: v, Rollout: 10}, "arm64", outside, 0, false},
		{"minSdk above the device's", Release{Version: v, Rollout: 100, MinSdk: 26}, "arm64", "", 24, false},
		{"minSdk at the device's", Release{Version: v, Rollout: 100, MinSdk: 24}, "arm64", "", 24, true},
		{"minSdk, device sent no sdk", Release{Version: v, Rollout: 100, MinSdk: 26}, "arm64", "", 0, true},
		{"unverified release, any sdk", Release{Version: v, Rollout: 100}, "arm64", "", 1, true},
	}
	for _, tt := range tests {
		if tt.r.Track == "" {
			tt.r.Track = DefaultTrack
		}
		c := stableClient(tt.abi, tt.device)
		c.SDK = tt.sdk
		if got := tt.r.OfferedTo(c); got != tt.want {
			t.Errorf("%s: OfferedTo = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// deviceWithBucket finds a device id whose bucket for v is in [lo, hi].
func deviceWithBucket(tb testing.TB, v Version, lo, hi int) string {
	tb.Helper()
	for i := range 100000 {
		d := fmt.Sprint(i)
		if b := Bucket(d, v); b >= lo && b <= hi {
			return d
		}
	}
	tb.Fatalf("no device in buckets %d..%d", lo, hi)
	return ""
}

// bucketOf computes the documented bucket formula independently of Bucket:
// the first 8 bytes of SHA-256 as an unsigned big-endian number, mod 100.
func bucketOf(s string) int {
	sum := sha256.Sum256([]byte(s))
	n := new(big.Int).SetBytes(sum[:8])
	return int(n.Mod(n, big.NewInt(100)).Int64())
}

// stableClient is a client on the stable track of the default tracks.
func stableClient(abi, device string) Client {
	return Client{ABI: abi, Device: device, Tracks: Tracks{DefaultTrack}}
}
