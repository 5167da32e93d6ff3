package model

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Actions the audit trail records.
const (
	ActionReleaseUpload   = "release.upload"
	ActionReleaseEdit     = "release.edit"
	ActionReleasePromote  = "release.promote"
	ActionReleaseHalt     = "release.halt"
	ActionReleaseResume   = "release.resume"
	ActionReleaseSchedule = "release.schedule" // a new rollout schedule
	ActionReleaseStep     = "release.step"     // a schedule step applied by the server
	ActionReleaseVerify   = "release.verify"   // a stored build verified again (wemesse releases verify)
	ActionReleaseYank     = "release.yank"
	ActionReleasePurge    = "release.purge"
	ActionSignatureCreate = "signature.create"
	ActionSignatureRevoke = "signature.revoke"
)

// AuditActions lists every action, for filters.
var AuditActions = []string{
	ActionReleaseUpload, ActionReleaseEdit, ActionReleasePromote, ActionReleaseHalt, ActionReleaseResume,
	ActionReleaseSchedule, ActionReleaseStep, ActionReleaseVerify, ActionReleaseYank, ActionReleasePurge, ActionSignatureCreate,
	ActionSignatureRevoke,
}

// Change is who makes a change and which action it is. A store that writes
// a change records it in the audit trail, in the same transaction, with
// what changed.
type Change struct {
	Actor  string
	Action string
}

// ChangeBy returns the change that ctx's actor (ActorOf) makes by action.
func ChangeBy(ctx context.Context, action string) Change {
	return Change{Actor: ActorOf(ctx), Action: action}
}

// AuditEntry is one row of the audit trail.
type AuditEntry struct {
	ID        int64
	At        time.Time
	Actor     string
	Action    string
	ReleaseID int64 // 0 when the change concerns no release
	Detail    string
}

// AuditFilter selects entries of the audit trail, newest first: those
// with id below Before (0: from the newest), by Actor, Action and ReleaseID
// when set, at most Limit.
type AuditFilter struct {
	Actor     string
	Action    string
	ReleaseID int64
	Before    int64
	Limit     int
}

// Validate checks the filter's bounds.
func (f AuditFilter) Validate() error {
	if f.Before < 0 || f.ReleaseID < 0 || f.Limit < 1 || f.Limit > MaxPageLimit {
		return Errorf(Invalid, "before and release must be non-negative ids and limit an integer from 1 to %d.", MaxPageLimit)
	}
	if len(f.Actor) > MaxTextLen || len(f.Action) > MaxTextLen {
		return Errorf(Invalid, "actor and action must be at most %d characters.", MaxTextLen)
	}
	return nil
}

// DescribeRelease says what a release is, for the audit trail.
func DescribeRelease(r Release) string {
	abi := r.TargetABI
	if abi == "" {
		abi = "universal"
	}
	return fmt.Sprintf("%s %s, %s, %d bytes, sha256 %s, rollout %d%%", r.Version, abi, r.Name, r.Size, r.SHA256, r.Rollout)
}

// DescribeEdit says what changed from before to after, field by field:
// Rollout: 10 → 50.
func DescribeEdit(before, after Release) string {
	var parts []string
	add := func(field string, b, a any) {
		if b != a {
			parts = append(parts, fmt.Sprintf("%s: %v → %v", field, b, a))
		}
	}
	add("Message", fmt.Sprintf("%q", before.Notes), fmt.Sprintf("%q", after.Notes))
	add("Skipped", before.Skipped, after.Skipped)
	add("Rollout", before.Rollout, after.Rollout)
	add("Yanked", before.Yanked, after.Yanked)
	add("Track", before.Track, after.Track)
	add("Halted", before.Halted, after.Halted)
	add("MandatoryAt", describeTime(before.MandatoryAt), describeTime(after.MandatoryAt))
	add("Schedule", describeSchedule(before.Schedule), describeSchedule(after.Schedule))
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, "; ")
}

func describeTime(t *time.Time) string {
	if t == nil {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

// describeSchedule lists a schedule's steps: 2026-12-05T00:00:00Z 50% pending.
func describeSchedule(steps []Step) string {
	if len(steps) == 0 {
		return "none"
	}
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = fmt.Sprintf("%s %d%% %s", s.At.UTC().Format(time.RFC3339), s.Rollout, s.State)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// DescribeSignature says what a signature is, for the audit trail; never
// its secret or hash.
func DescribeSignature(s Signature) string {
	d := s.Role + " " + s.Label()
	if !s.ExpiresAt.IsZero() {
		d += ", expires " + s.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return d
}
