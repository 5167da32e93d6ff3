package service

import (
	"context"
	"time"
)

// SetSleep replaces how s waits out a wrong secret's pace.
func SetSleep(s *Signatures, sleep func(ctx context.Context, d time.Duration)) { s.sleep = sleep }
