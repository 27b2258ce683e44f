package image

import "testing"

func TestParseID(t *testing.T) {
	id, err := ParseID("0123456789abcdef")
	if err != nil || id.String() != "0123456789abcdef" || id.IsZero() {
		t.Fatalf("ParseID: %v, %v", id, err)
	}
	for _, s := range []string{"", "0123", "0123456789ABCDEF", "0123456789abcdeg", "0123456789abcdef00"} {
		if _, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) succeeded", s)
		}
	}
	if !(ID{}).IsZero() {
		t.Error("the zero id is not zero")
	}
}
