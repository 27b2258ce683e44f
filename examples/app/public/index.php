<?php
// Sample app for the loopcast demo and end-to-end tests: every included file
// reports the release it was built into, so a response mixing two releases
// is visible.
require __DIR__ . '/../src/release.php';
require __DIR__ . '/../src/header.php';
require __DIR__ . '/../src/body.php';
header('Content-Type: text/plain');
echo 'index=', LOOPCAST_RELEASE, ' header=', HEADER_RELEASE, ' body=', BODY_RELEASE, "\n";
echo 'root=', $_SERVER['DOCUMENT_ROOT'] ?? '', "\n";
