package release

// Crash points are named steps of staging, switching and retiring at which
// the crash tests (crash_test.go) kill the process with SIGKILL, to check
// that Reconcile recovers from each. crashHook is nil outside those tests,
// so a crash point costs one nil check and changes nothing.
const (
	stepManifestWritten = "stage: manifest written" // images/<id>.manifest, no image yet
	stepCopying         = "stage: copying image"    // a block of a cross-filesystem copy written
	stepAdopted         = "stage: image adopted"    // images/<id>.img in place, not mounted
	stepMounted         = "stage: mounted"          // mounted, not yet recorded
	stepSlotUnbound     = "stage: slot emptied"     // a slot's old release unbound, the new one not yet bound
	stepSwitchChecked   = "switch: target mounted"  // before `current` is flipped
	stepFlipped         = "switch: current flipped" // before the state records it
	stepRetireUnmounted = "retire: unmounted"       // image not yet removed
	stepSavingState     = ": saving state"          // suffix of the operation's name
)

// crashHook, when set, is called at every crash point with its name.
var crashHook func(step string)

func crashPoint(step string) {
	if crashHook != nil {
		crashHook(step)
	}
}
