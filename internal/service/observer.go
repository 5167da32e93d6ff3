package service

// Observer learns what the services do, for metrics.
type Observer interface {
	// UploadBytes counts received build bytes.
	UploadBytes(n int64)
	// Verification counts one Argon2id verification: match, mismatch or
	// busy; or hint_budget for a check refused without one.
	Verification(result string)
	// AuthCache counts one signature check by cache outcome: hit,
	// failed_hit or miss.
	AuthCache(result string)
	// DeviceBatch records how many device sessions one transaction wrote.
	DeviceBatch(n int)
}

// NopObserver discards everything.
type NopObserver struct{}

func (NopObserver) UploadBytes(int64)   {}
func (NopObserver) Verification(string) {}
func (NopObserver) AuthCache(string)    {}
func (NopObserver) DeviceBatch(int)     {}
