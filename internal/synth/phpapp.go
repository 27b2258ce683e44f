package synth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// PHPAppChanged is the one file of a PHP app that differs between labels.
const PHPAppChanged = "src/gen/C0007.php"

// PHPApp writes a PHP application of n class files (about 2 KiB each)
// under dir/src/gen and a page, dir/public/all.php, that loads every one
// of them, as a framework's bootstrap does, and prints
//
//	classes=N label=LABEL
//
// Only PHPAppChanged depends on label, so two labels make a one-file
// release. Every file's mtime is fixed in the past (OPcache does not
// cache a file modified in the last seconds).
func PHPApp(dir string, n int, label string) error {
	if n < 8 {
		return fmt.Errorf("synth: a PHP app needs at least 8 classes, not %d", n)
	}
	if strings.ContainsAny(label, `'\`) {
		return fmt.Errorf("synth: label %q: no quotes or backslashes", label)
	}
	var page strings.Builder
	page.WriteString("<?php\n// Loads every class of the app, as a framework's bootstrap does.\n")
	for i := range n {
		rel := fmt.Sprintf("src/gen/C%04d.php", i)
		fmt.Fprintf(&page, "require __DIR__ . '/../%s';\n", rel)
		value := "stable"
		if rel == PHPAppChanged {
			value = label
		}
		if err := writePHP(filepath.Join(dir, rel), phpClass(i, value)); err != nil {
			return err
		}
	}
	fmt.Fprintf(&page, "header('Content-Type: text/plain');\necho 'classes=', %d, ' label=', \\App\\Gen\\C0007::label(), \"\\n\";\n", n)
	return writePHP(filepath.Join(dir, "public/all.php"), page.String())
}

// phpClass is class Ci: a label method and six small methods, enough
// code that compiling it costs what a real class does.
func phpClass(i int, label string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<?php\nnamespace App\\Gen;\n\nfinal class C%04d\n{\n", i)
	fmt.Fprintf(&b, "    public static function label(): string\n    {\n        return '%s';\n    }\n\n", label)
	for m := range 6 {
		fmt.Fprintf(&b, "    public function m%02d(array $rows, int $limit = %d): array\n    {\n", m, 10+m)
		fmt.Fprintf(&b, "        $out = [];\n        foreach ($rows as $k => $v) {\n")
		fmt.Fprintf(&b, "            if (count($out) >= $limit) {\n                break;\n            }\n")
		fmt.Fprintf(&b, "            $out[$k] = is_array($v) ? $this->m%02d($v, $limit - 1) : strtoupper((string)$v) . '%d';\n        }\n", (m+1)%6, i)
		fmt.Fprintf(&b, "        return $out;\n    }\n\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// phpAppTime is every file's mtime: fixed, so builds are deterministic,
// and old, so OPcache caches them at once.
var phpAppTime = time.Unix(1_700_000_000, 0)

func writePHP(path, body string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		return err
	}
	return os.Chtimes(path, phpAppTime, phpAppTime)
}
