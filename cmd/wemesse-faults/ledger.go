package main

import (
	"maps"
	"slices"
	"time"
)

// The ledger derives, from what clients saw, what the database must hold
// after device reports: which devices have a row, with which version, and
// how many each release's uploads counter grew.
//
// A report answered 200 committed. A report answered 503 while PostgreSQL
// was stopped the whole time (from after pg_ctl stop returned to before
// pg_ctl start began) did not: its transaction could not reach the
// database. Every other report without a 200 (a 503 across a stop or a
// start, a timeout, a dropped connection) may or may not have committed:
// its outcome is unknown. Each device's reports are sent one after the
// other, so its committed reports apply in the order sent. A device with no
// unknown report has exactly one possible final state; one with unknown
// reports has a small set, found by trying every subset of them.

// outcome is what a client knows about one report.
type outcome int

const (
	acked   outcome = iota // 200: committed
	unknown                // may or may not have committed
	refused                // 503 while the database was down throughout: not committed
)

func (o outcome) String() string {
	switch o {
	case acked:
		return "acked"
	case unknown:
		return "unknown"
	}
	return "refused"
}

// classify decides the outcome of a report from its status and its time
// span, given the span during which the database was down for certain.
func classify(status int, start, end, downFrom, downTo time.Time) outcome {
	switch {
	case status == 200:
		return acked
	case status == 503 && !downFrom.IsZero() && start.After(downFrom) && end.Before(downTo):
		return refused
	}
	return unknown
}

// attempt is one report of a device.
type attempt struct {
	version string // bare version, as the server stores it
	outcome outcome
}

// ledgerDevice is one device and its reports in the order sent.
type ledgerDevice struct {
	session  int64
	mac      string
	abi      string // the ABI its reports are counted for ("" is the server's default)
	rowABI   string // users.target_abi expected for it
	attempts []attempt
}

// releaseKey names a release by version and ABI ("" for universal).
type releaseKey struct{ version, abi string }

// span is a closed range of possible counts.
type span struct{ min, max int64 }

// deviceExpect is what a device's row may be.
type deviceExpect struct {
	mustExist bool            // some report surely committed
	mayExist  bool            // some report may have committed
	finals    map[string]bool // app_version the row may hold
	definite  bool            // no unknown report: exactly one possible state
	unknowns  int
}

// settlement is what the database may hold after every report.
type settlement struct {
	uploads      map[releaseKey]span // by the release the server counts on
	devices      []deviceExpect      // parallel to the ledger
	exhaustive   int                 // devices with unknowns settled by trying every subset
	approximated int                 // devices with too many unknowns: looser bounds
}

// resolver maps a reported version and the device's ABI to the release the
// server counts it on, if any.
type resolver func(version, abi string) (releaseKey, bool)

// observation is a device's row as found: whether it exists and its
// version.
type observation struct {
	found   bool
	version string
}

// settle computes the possible final states. Devices with more than
// maxUnknown unknown reports get bounds that are valid but not tight.
//
// When observed is set, it gives each device's row as found, and the
// counts are computed only over the subsets of unknown reports that leave
// that row: the uploads counters must agree with the same commits that
// produced the users table. A device whose row no subset explains keeps
// its unconditioned bounds (its row check fails on its own).
func settle(devs []*ledgerDevice, resolve resolver, maxUnknown int, observed func(i int) observation) settlement {
	st := settlement{uploads: map[releaseKey]span{}, devices: make([]deviceExpect, len(devs))}
	for i, d := range devs {
		var per map[releaseKey]span
		var exp deviceExpect
		var unknowns []int
		for j, a := range d.attempts {
			if a.outcome == unknown {
				unknowns = append(unknowns, j)
			}
		}
		if len(unknowns) <= maxUnknown {
			var obs *observation
			if observed != nil {
				o := observed(i)
				obs = &o
			}
			per, exp = settleExact(d, resolve, unknowns, obs)
			if len(unknowns) > 0 {
				st.exhaustive++
			}
		} else {
			per, exp = settleLoose(d, resolve)
			st.approximated++
		}
		exp.unknowns = len(unknowns)
		exp.definite = len(unknowns) == 0
		st.devices[i] = exp
		for k, s := range per {
			t := st.uploads[k]
			t.min += s.min
			t.max += s.max
			st.uploads[k] = t
		}
	}
	return st
}

// replay applies the committed reports in order and returns the counts and
// the final version ("" when no report committed).
func replay(d *ledgerDevice, resolve resolver, committed func(j int) bool) (map[releaseKey]int64, string) {
	counts := map[releaseKey]int64{}
	current, known := "", false
	for j, a := range d.attempts {
		if a.outcome == refused || !committed(j) {
			continue
		}
		if !known || current != a.version {
			if k, ok := resolve(a.version, d.abi); ok {
				counts[k]++
			}
		}
		current, known = a.version, true
	}
	return counts, current
}

// settleExact tries every subset of the unknown reports; with obs, only
// those that leave the observed row count, unless none does.
func settleExact(d *ledgerDevice, resolve resolver, unknowns []int, obs *observation) (map[releaseKey]span, deviceExpect) {
	if obs != nil {
		per, exp := settleExact(d, resolve, unknowns, nil)
		perObs, any := countsMatching(d, resolve, unknowns, *obs)
		if any {
			per = perObs
		}
		return per, exp
	}
	exp := deviceExpect{mustExist: true, finals: map[string]bool{}}
	keys := countedKeys(d, resolve)
	per := map[releaseKey]span{}
	eachOutcome(d, resolve, unknowns, func(counts map[releaseKey]int64, final string) {
		widen(per, keys, counts)
		if final == "" {
			exp.mustExist = false
		} else {
			exp.mayExist = true
			exp.finals[final] = true
		}
	})
	return per, exp
}

// countsMatching bounds the counts over the subsets of unknown reports
// whose final row is obs; false when there is none.
func countsMatching(d *ledgerDevice, resolve resolver, unknowns []int, obs observation) (map[releaseKey]span, bool) {
	keys := countedKeys(d, resolve)
	per, any := map[releaseKey]span{}, false
	eachOutcome(d, resolve, unknowns, func(counts map[releaseKey]int64, final string) {
		if (final != "") != obs.found || (obs.found && final != obs.version) {
			return
		}
		widen(per, keys, counts)
		any = true
	})
	return per, any
}

// countedKeys are the releases the device's reports that may have
// committed count on.
func countedKeys(d *ledgerDevice, resolve resolver) map[releaseKey]bool {
	keys := map[releaseKey]bool{}
	for _, a := range d.attempts {
		if k, ok := resolve(a.version, d.abi); ok && a.outcome != refused {
			keys[k] = true
		}
	}
	return keys
}

// eachOutcome replays the acknowledged reports with every subset of the
// unknown ones, and calls fn with the counts and final version of each.
func eachOutcome(d *ledgerDevice, resolve resolver, unknowns []int, fn func(counts map[releaseKey]int64, final string)) {
	for mask := 0; mask < 1<<len(unknowns); mask++ {
		in := map[int]bool{}
		for b, j := range unknowns {
			if mask&(1<<b) != 0 {
				in[j] = true
			}
		}
		fn(replay(d, resolve, func(j int) bool { return d.attempts[j].outcome == acked || in[j] }))
	}
}

// widen stretches the span of each key to take in counts.
func widen(per map[releaseKey]span, keys map[releaseKey]bool, counts map[releaseKey]int64) {
	for k := range keys {
		n := counts[k]
		s, seen := per[k]
		if !seen {
			s = span{n, n}
		}
		s.min, s.max = min(s.min, n), max(s.max, n)
		per[k] = s
	}
}

// settleLoose bounds a device with many unknown reports: at least what its
// acknowledged reports alone count (an unknown report in between can only
// add transitions), at most one per report that may have committed; its
// final version is that of its last acknowledged report or of a later
// unknown one.
func settleLoose(d *ledgerDevice, resolve resolver) (map[releaseKey]span, deviceExpect) {
	lower, _ := replay(d, resolve, func(j int) bool { return d.attempts[j].outcome == acked })
	per := map[releaseKey]span{}
	exp := deviceExpect{mayExist: true, finals: map[string]bool{}}
	for j, a := range d.attempts {
		if a.outcome == refused {
			continue
		}
		if k, ok := resolve(a.version, d.abi); ok {
			s := per[k]
			s.max++
			per[k] = s
		}
		if a.outcome == acked {
			exp.mustExist = true
			clear(exp.finals)
		}
		exp.finals[d.attempts[j].version] = true
	}
	for k, n := range lower {
		s := per[k]
		s.min = n
		per[k] = s
	}
	return per, exp
}

// sortedKeys returns the releases of a settlement in a stable order.
func sortedKeys(m map[releaseKey]span) []releaseKey {
	return slices.SortedFunc(maps.Keys(m), func(a, b releaseKey) int {
		if a.version != b.version {
			if a.version < b.version {
				return -1
			}
			return 1
		}
		if a.abi < b.abi {
			return -1
		} else if a.abi > b.abi {
			return 1
		}
		return 0
	})
}
