package release

import (
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/loopmount"
)

// Status is what the agent reports about its store. The zero id (none) is
// written "" in JSON.
type Status struct {
	Root      string          `json:"root"`
	Current   image.ID        `json:"current"`  // what `current` points at
	Previous  image.ID        `json:"previous"` // the rollback target
	Staged    []image.ID      `json:"staged"`   // staged, never activated
	Releases  []ReleaseStatus `json:"releases"` // live releases, oldest first
	Failed    []Failure       `json:"failed,omitempty"`
	FreeBytes int64           `json:"free_bytes"`
	LastError string          `json:"last_error,omitempty"`
	// LastRefusal is the last session the agent refused, and why.
	LastRefusal   string    `json:"last_refusal,omitempty"`
	LastRefusalAt time.Time `json:"last_refusal_at,omitzero"`
	// PHPFPM is the pool the agent keeps OPcache in ("" when none).
	PHPFPM string `json:"php_fpm,omitempty"`
	// UsersHidden counts processes WithUsers could not inspect (another
	// user's, when not run as root).
	UsersHidden int `json:"users_hidden,omitempty"`
}

// ReleaseStatus describes one live release.
type ReleaseStatus struct {
	Entry
	Mounted bool `json:"mounted"`
	// Kept says why retention keeps it, or "in use" when no rule does and
	// processes hold it (it goes when they are done).
	Kept string `json:"kept"`
	// Slot is the slot it is bound in ("" when none); Dir is the real path
	// it is served from when current: its slot, else releases/<id>.
	Slot string `json:"slot,omitempty"`
	Dir  string `json:"dir"`
	// Users are the processes using it (by WithUsers; current's are not
	// listed: every web worker is one).
	Users []loopmount.Process `json:"users,omitempty"`
}

// Status reports the store's state. It takes no lock: the state file is
// replaced atomically, so it reads one consistent version.
func (s *Store) Status() (*Status, error) {
	st, err := s.State()
	if err != nil {
		return nil, err
	}
	free, err := s.FreeBytes()
	if err != nil {
		return nil, err
	}
	out := &Status{
		Root: s.root, Current: s.linkedID(st), Previous: st.Previous, Staged: st.Staged,
		Failed: st.Failed, FreeBytes: free, LastError: st.LastError,
		LastRefusal: st.LastRefusal, LastRefusalAt: st.LastRefusalAt, PHPFPM: st.PHPFPM,
	}
	keep := s.keepSet(st)
	for _, e := range st.History {
		if !e.Retired {
			why, ok := keep[e.ID]
			if !ok {
				why = keptInUse
			}
			out.Releases = append(out.Releases, ReleaseStatus{Entry: e, Mounted: s.mounted(e.ID), Kept: why,
				Slot: st.slotOf(e.ID), Dir: s.servedDir(st, e.ID)})
		}
	}
	return out, nil
}

// WithUsers adds to st the processes that use each release but current,
// read from /proc (what `fuser -m` sees).
func (s *Store) WithUsers(st *Status) error {
	state, err := s.State()
	if err != nil {
		return err
	}
	var ids []image.ID
	for _, r := range st.Releases {
		ids = append(ids, r.ID)
	}
	u, hidden, err := s.usersOf(state, ids)
	if err != nil {
		return err
	}
	for i := range st.Releases {
		if r := &st.Releases[i]; r.ID != st.Current {
			r.Users = u[r.ID]
		}
	}
	st.UsersHidden = hidden
	return nil
}

// RecordPool records the php-fpm pool (its socket) the agent serves
// OPcache through, so that local commands report on the same pool; "" when
// it serves none.
func (s *Store) RecordPool(socket string) error {
	return s.transact("record pool", func(st *State) (bool, error) {
		if st.PHPFPM == socket {
			return false, nil
		}
		st.PHPFPM = socket
		return true, nil
	})
}

// NoteRefusal records that the agent refused a session, and why, for
// `receiver status` and the sender's STATUS. The state is written only
// when the text changes, so a flood of one refusal costs no disk writes.
func (s *Store) NoteRefusal(text string) error {
	return s.transact("note refusal", func(st *State) (bool, error) {
		if st.LastRefusal == text {
			return false, nil
		}
		st.LastRefusal, st.LastRefusalAt = text, s.now()
		return true, nil
	})
}
