package release

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/atomicfile"
)

const (
	// maxFailures bounds the failure log in the state file: enough to see a
	// pattern, small enough to read in `receiver status`.
	maxFailures = 10
	// maxHistory bounds the history; only retired entries are dropped, oldest
	// first. At several deploys a day this remembers months of releases, so
	// an old release sent again is still known to be old.
	maxHistory = 512
)

// State is the store's record, kept in the state file as JSON. Release ids
// are written as their 16 hex digits; the zero id (no release) is left out
// of current and previous, and written "" in a failure of no known id.
type State struct {
	Current   image.ID   `json:"current,omitzero"`
	Previous  image.ID   `json:"previous,omitzero"` // the rollback target
	Staged    []image.ID `json:"staged"`            // staged, never activated, oldest first
	Failed    []Failure  `json:"failed"`            // most recent last
	History   []Entry    `json:"history"`           // in staging order
	LastError string     `json:"last_error,omitempty"`
	// LastRefusal is the last session this host refused and why (cause:
	// detail), with when: what the operator reads instead of silence.
	LastRefusal   string    `json:"last_refusal,omitempty"`
	LastRefusalAt time.Time `json:"last_refusal_at,omitzero"`
	Seq           uint64    `json:"seq"` // last order number handed out
	// Retention is the policy the agent last applied, so that a local
	// `receiver status` explains what is kept with the agent's flags.
	Retention *Retention `json:"retention,omitempty"`
	// Slots maps each slot holding a release to that release's id.
	Slots map[string]image.ID `json:"slots,omitempty"`
	// PHPFPM is the pool socket the agent last served OPcache through, so
	// that a local `receiver status` reports on the same pool.
	PHPFPM string `json:"php_fpm,omitempty"`
}

// Retention is a store's retention policy: Options.Keep and KeepFor.
type Retention struct {
	Keep    int           `json:"keep"`
	KeepFor time.Duration `json:"keep_for_ns"` // negative: none
}

// Entry is one release the store has staged.
type Entry struct {
	ID        image.ID `json:"id"`
	Order     uint64   `json:"order"`               // first staging; higher is newer
	Activated uint64   `json:"activated,omitempty"` // latest activation's order; 0: never
	Size      int64    `json:"size"`
	Label     string   `json:"label,omitempty"`
	// Built is the signed manifest's build time (Unix seconds): how old
	// the release is, whatever order hosts staged it in.
	Built       int64     `json:"built,omitempty"`
	StagedAt    time.Time `json:"staged_at"`
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	// LeftCurrentAt is when it last stopped being current: --keep-for runs
	// from then. Zero while current, or when it never was.
	LeftCurrentAt time.Time `json:"left_current_at,omitzero"`
	Retired       bool      `json:"retired,omitempty"` // unmounted, image removed
	// Quarantined says why its image was found corrupt (Verify, the
	// scrub): never a chunk source or a base again, never activated.
	Quarantined   string    `json:"quarantined,omitempty"`
	QuarantinedAt time.Time `json:"quarantined_at,omitzero"`
}

// Failure records a release that failed to stage or mount.
type Failure struct {
	ID    image.ID  `json:"id"` // zero: the manifest did not say (unreadable)
	Error string    `json:"error"`
	At    time.Time `json:"at"`
}

// next hands out the next order number.
func (st *State) next() uint64 {
	st.Seq++
	return st.Seq
}

// entry returns the history entry of id, or nil.
func (st *State) entry(id image.ID) *Entry {
	for i := range st.History {
		if st.History[i].ID == id {
			return &st.History[i]
		}
	}
	return nil
}

// live returns the entry of id if it is staged and not retired, or nil.
func (st *State) live(id image.ID) *Entry {
	if e := st.entry(id); e != nil && !e.Retired {
		return e
	}
	return nil
}

// fail records a failure of id.
func (st *State) fail(id image.ID, err error) {
	st.Failed = append(st.Failed, Failure{ID: id, Error: err.Error(), At: time.Now().UTC()})
	if n := len(st.Failed) - maxFailures; n > 0 {
		st.Failed = slices.Delete(st.Failed, 0, n)
	}
}

// clearFailure forgets earlier failures of id after it staged fine.
func (st *State) clearFailure(id image.ID) {
	st.Failed = slices.DeleteFunc(st.Failed, func(f Failure) bool { return f.ID == id })
}

// tidy recomputes the derived fields and bounds the history.
func (st *State) tidy() {
	st.Staged = []image.ID{} // written as [], not null
	if st.Failed == nil {
		st.Failed = []Failure{}
	}
	if st.History == nil {
		st.History = []Entry{}
	}
	for _, e := range st.History {
		if !e.Retired && e.Activated == 0 {
			st.Staged = append(st.Staged, e.ID)
		}
	}
	for len(st.History) > maxHistory {
		i := slices.IndexFunc(st.History, func(e Entry) bool { return e.Retired })
		if i < 0 {
			break
		}
		st.History = slices.Delete(st.History, i, i+1)
	}
}

// loadState reads the state file; a missing file is an empty state.
func loadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	st := new(State)
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("release: state file %s: %w", path, err)
	}
	return st, nil
}

// saveState writes the state file atomically.
func saveState(path string, st *State) error {
	st.tidy()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("release: write state %s: %w", path, err)
	}
	return nil
}
