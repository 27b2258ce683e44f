<?php
// Sample app for the loopcast demo and end-to-end tests: every included file
// reports the release it was built into, so a response mixing two releases
// is visible. ?pause=MS waits between two includes (at most a second), so a
// switch during the request would show up as a mix.
require __DIR__ . '/../src/release.php';
require __DIR__ . '/../src/header.php';
if (isset($_GET['pause'])) {
    usleep(min(max((int)$_GET['pause'], 0), 1000) * 1000);
}
require __DIR__ . '/../src/body.php';
header('Content-Type: text/plain');
echo 'index=', LOOPCAST_RELEASE, ' header=', HEADER_RELEASE, ' body=', BODY_RELEASE, "\n";
echo 'root=', $_SERVER['DOCUMENT_ROOT'] ?? '', "\n";
