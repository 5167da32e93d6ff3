package model

import (
	"regexp"
	"slices"
	"strings"
	"time"
)

// DefaultTrack is the track of an upload and of an update check that name
// none.
const DefaultTrack = "stable"

var trackName = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// ValidTrack reports whether name is a well-formed track name:
// [a-z0-9-]{1,32}.
func ValidTrack(name string) bool { return trackName.MatchString(name) }

// Tracks lists the release tracks from the most to the least adventurous,
// such as internal, beta, stable.
type Tracks []string

// ParseTracks reads a comma-separated list of track names. Every name must
// be well-formed and listed once, and DefaultTrack must be among them.
func ParseTracks(s string) (Tracks, error) {
	var ts Tracks
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		switch {
		case !ValidTrack(name):
			return nil, Errorf(Invalid, "track %q must match [a-z0-9-]{1,32}", name)
		case slices.Contains(ts, name):
			return nil, Errorf(Invalid, "track %q is listed twice", name)
		}
		ts = append(ts, name)
	}
	if !slices.Contains(ts, DefaultTrack) {
		return nil, Errorf(Invalid, "the tracks must include %s, the default track", DefaultTrack)
	}
	return ts, nil
}

// Check returns Invalid unless track is listed.
func (ts Tracks) Check(track string) error {
	if !slices.Contains(ts, track) {
		return Errorf(Invalid, "track must be one of %s.", strings.Join(ts, ", "))
	}
	return nil
}

// From returns the tracks whose releases a client on track is offered:
// track itself and every less adventurous one after it. Invalid when track
// is not listed.
func (ts Tracks) From(track string) (Tracks, error) {
	i := slices.Index(ts, track)
	if i < 0 {
		return nil, ts.Check(track)
	}
	return ts[i:], nil
}

// StepState is where a schedule step stands.
type StepState string

// The states of a schedule step.
const (
	StepPending   StepState = "pending"   // its time has not come, or no server has applied it yet
	StepApplied   StepState = "applied"   // it set the release's rollout, once
	StepCancelled StepState = "cancelled" // a hand change of the rollout came first
)

// Step is one step of a release's scheduled ramp: at At the rollout becomes
// Rollout.
type Step struct {
	At      time.Time
	Rollout int
	State   StepState
}

// MaxSteps bounds a schedule.
const MaxSteps = 20

// validateSchedule checks steps as set by an admin at now: each rollout in
// range, times in the future and strictly increasing.
func validateSchedule(steps []Step, now time.Time) error {
	if len(steps) > MaxSteps {
		return Errorf(Invalid, "Schedule may have at most %d steps.", MaxSteps)
	}
	for i, s := range steps {
		switch {
		case s.Rollout < 1 || s.Rollout > FullRollout:
			return Errorf(Invalid, "Schedule step %d: Rollout must be an integer from 1 to 100.", i+1)
		case !s.At.After(now):
			return Errorf(Invalid, "Schedule step %d: At must be in the future.", i+1)
		case i > 0 && !s.At.After(steps[i-1].At):
			return Errorf(Invalid, "Schedule step %d: At must be later than step %d's.", i+1, i)
		}
	}
	return nil
}

// Due reports whether the release has a pending step whose time has come
// at now and is not halted, so that a server should apply its schedule.
func (r Release) Due(now time.Time) bool {
	if r.Halted {
		return false
	}
	for _, s := range r.Schedule {
		if s.State == StepPending && !s.At.After(now) {
			return true
		}
	}
	return false
}

// AppliedStep is a schedule step a server applied to a release.
type AppliedStep struct {
	ReleaseID int64
	Version   Version
	At        time.Time // the step's time
	Rollout   int       // the rollout it set
}
