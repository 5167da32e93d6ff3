//go:build !linux

package handler

import (
	"net"
	"time"
)

// setUserTimeout reports false where TCP_USER_TIMEOUT does not exist:
// every request then moves its own deadlines (progressDeadlines).
func setUserTimeout(net.Conn, time.Duration) bool { return false }
