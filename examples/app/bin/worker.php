<?php
// bin/worker.php: a long-running CLI job (a queue worker, a cron script).
// It waits for a line on stdin, then loads the rest of its code by absolute
// path, as autoloaders and `require __DIR__ . '/...'` do, and prints the
// release each file came from. Started from `current`
//   cd /srv/loopcast/current && php bin/worker.php
// or under a lease
//   receiver exec -- php bin/worker.php
// it sees the one release it started in from start to end, whatever is
// deployed meanwhile.
fgets(STDIN);
require __DIR__ . '/../src/header.php';
require __DIR__ . '/../src/body.php';
echo HEADER_RELEASE, ' ', BODY_RELEASE, "\n";
