package loopmount

// The tests are package loopmount_test, so that they can use
// internal/mounttest (which imports this package); these let them force
// the LOOP_SET_FD fallback and count its binds.
var (
	NoConfigure   = &noConfigure
	FallbackBinds = &fallbackBinds
)
