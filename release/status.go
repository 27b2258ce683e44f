package release

// Status is what the agent reports about its store.
type Status struct {
	Root      string          `json:"root"`
	Current   string          `json:"current"`  // what `current` points at
	Previous  string          `json:"previous"` // the rollback target
	Staged    []string        `json:"staged"`   // staged, never activated
	Releases  []ReleaseStatus `json:"releases"` // live releases, oldest first
	Failed    []Failure       `json:"failed,omitempty"`
	FreeBytes int64           `json:"free_bytes"`
	LastError string          `json:"last_error,omitempty"`
}

// ReleaseStatus describes one live release.
type ReleaseStatus struct {
	Entry
	Mounted bool `json:"mounted"`
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
		Root: s.root, Current: s.linkedID(), Previous: st.Previous, Staged: st.Staged,
		Failed: st.Failed, FreeBytes: free, LastError: st.LastError,
	}
	for _, e := range st.History {
		if !e.Retired {
			out.Releases = append(out.Releases, ReleaseStatus{Entry: e, Mounted: s.mounted(e.ID)})
		}
	}
	return out, nil
}
