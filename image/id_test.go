package image

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestParseID(t *testing.T) {
	id, err := ParseID("0123456789abcdef")
	if err != nil || id.String() != "0123456789abcdef" || id.IsZero() {
		t.Fatalf("ParseID: %v, %v", id, err)
	}
	for _, s := range []string{"", "0123", "0123456789ABCDEF", "0123456789abcdeg", "0123456789abcdef00"} {
		if id, err := ParseID(s); err == nil || !id.IsZero() {
			t.Errorf("ParseID(%q) = %s, %v; want the zero id and an error", s, id, err)
		}
	}
	if a, b := (ID{1}), (ID{2}); a.Compare(b) != -1 || b.Compare(a) != 1 || a.Compare(a) != 0 {
		t.Error("Compare does not order ids as their texts")
	}
	if !(ID{}).IsZero() {
		t.Error("the zero id is not zero")
	}
}

// TestIDText: JSON carries an id as its 16 digits, the zero id as "" (and
// `omitzero` leaves it out), as the string ids before it did; what is not
// an id does not load.
func TestIDText(t *testing.T) {
	id, _ := ParseID("0123456789abcdef")
	type rec struct {
		A ID   `json:"a"`
		Z ID   `json:"z"`
		O ID   `json:"o,omitzero"`
		L []ID `json:"l"`
		M map[ID]int
	}
	in := rec{A: id, L: []ID{id, {}}, M: map[ID]int{id: 1}}
	b, err := json.Marshal(in)
	want := `{"a":"0123456789abcdef","z":"","l":["0123456789abcdef",""],"M":{"0123456789abcdef":1}}`
	if err != nil || string(b) != want {
		t.Fatalf("Marshal = %s, %v; want %s", b, err, want)
	}
	var out rec
	if err := json.Unmarshal(b, &out); err != nil || !reflect.DeepEqual(out, in) {
		t.Errorf("Unmarshal = %+v, %v; want %+v", out, err, in)
	}
	for _, bad := range []string{`{"a":"v1"}`, `{"a":"0123456789ABCDEF"}`, `{"l":["../../etc"]}`} {
		if err := json.Unmarshal([]byte(bad), &out); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
}

// ParseRelease reads what ParseID reads but refuses the zero id, which
// names no release.
func TestParseRelease(t *testing.T) {
	if id, err := ParseRelease("0123456789abcdef"); err != nil || id.String() != "0123456789abcdef" {
		t.Errorf("ParseRelease(0123456789abcdef) = %v, %v", id, err)
	}
	for _, s := range []string{"0000000000000000", "", "0123"} {
		if _, err := ParseRelease(s); err == nil {
			t.Errorf("ParseRelease(%q): no error", s)
		}
	}
}
