<?php
// loopcast-opcache.php: the loopcast agent's helper inside php-fpm. The
// agent runs it over FastCGI on the pool's socket (it is outside every
// document root, so no web request reaches it) to read OPcache's state, to
// drop the scripts of files a release slot changes, and to compile a staged
// release's files before the switch. Input: one JSON object on stdin;
// output: one JSON object. Written by the agent; do not edit.
header('Content-Type: application/json');
$in = json_decode(file_get_contents('php://input'), true);
$out = ['ok' => true];
if (!is_array($in) || !isset($in['op'])) {
    http_response_code(400);
    echo json_encode(['ok' => false, 'error' => 'loopcast-opcache: bad request']);
    return;
}
$enabled = function_exists('opcache_get_status');
// OPcache on, but its API refused (opcache.restrict_api names another
// script's path): nothing this helper does would take effect, so say so
// rather than answer "done" for invalidations that did nothing.
if ($enabled && ini_get('opcache.enable') && opcache_get_status(false) === false) {
    http_response_code(500);
    echo json_encode(['ok' => false, 'error' => 'loopcast-opcache: the OPcache API is refused to this script (opcache.restrict_api = '
        . ini_get('opcache.restrict_api') . '): set it empty, or to a prefix of ' . __FILE__]);
    return;
}
$dir = isset($in['dir']) ? rtrim((string)$in['dir'], '/') . '/' : '';
$paths = isset($in['paths']) && is_array($in['paths']) ? $in['paths'] : null;

function loopcast_status($enabled) {
    // requests the pool runs besides this one: how busy it is now
    $active = -1;
    if (function_exists('fpm_get_status') && is_array($fpm = fpm_get_status())) {
        $active = max(0, (int)$fpm['active-processes'] - 1);
    }
    $s = $enabled ? opcache_get_status(false) : false;
    if (!is_array($s)) {
        return ['enabled' => false, 'active_requests' => $active];
    }
    $c = opcache_get_configuration();
    $m = $s['memory_usage'];
    $st = $s['opcache_statistics'];
    return [
        'enabled' => (bool)$s['opcache_enabled'],
        'validate_timestamps' => (bool)($c['directives']['opcache.validate_timestamps'] ?? true),
        'memory_limit' => (int)($c['directives']['opcache.memory_consumption'] ?? 0),
        'used_memory' => (int)$m['used_memory'],
        'free_memory' => (int)$m['free_memory'],
        'wasted_memory' => (int)$m['wasted_memory'],
        'scripts' => (int)$st['num_cached_scripts'],
        'max_scripts' => (int)$st['max_cached_keys'],
        'hits' => (int)$st['hits'],
        'misses' => (int)$st['misses'],
        'oom_restarts' => (int)$st['oom_restarts'],
        'hash_restarts' => (int)$st['hash_restarts'],
        'manual_restarts' => (int)$st['manual_restarts'],
        'start_time' => (int)$st['start_time'],
        'cache_full' => (bool)$s['cache_full'],
        'active_requests' => $active,
        'realpath_cache_ttl' => (int)ini_get('realpath_cache_ttl'),
    ];
}

switch ($in['op']) {
case 'status':
    break;
case 'busy':
    // the pool's requests under dir, but this one: every process not idle
    // (running, finishing: shutdown functions still include files, reading
    // headers) whose script is under dir; those not idle whose script is
    // not known yet; and the requests waiting in the listen queue
    $busy = [];
    $unknown = 0;
    $self = $_SERVER['SCRIPT_FILENAME'] ?? '';
    $selfPid = getmypid();
    $fpm = function_exists('fpm_get_status') ? fpm_get_status() : false;
    if (!is_array($fpm)) {
        $out = ['ok' => false, 'error' => 'loopcast-opcache: fpm_get_status() is not available'];
        break;
    }
    foreach ($fpm['procs'] as $p) {
        $state = (string)($p['state'] ?? '');
        $script = (string)($p['script'] ?? '');
        if ($state === 'Idle' || (int)($p['pid'] ?? 0) === $selfPid) {
            continue;
        }
        if ($script === '' || $script === '-') {
            $unknown++;
        } elseif ($dir !== '' && strncmp($script, $dir, strlen($dir)) === 0) {
            $busy[] = $state . ' ' . $script;
        }
    }
    $out['busy'] = $busy;
    $out['unknown'] = $unknown;
    $out['queue'] = (int)($fpm['listen-queue'] ?? 0);
    break;
case 'invalidate':
    // paths (relative to dir) out of OPcache; no paths: every cached script under dir
    if (!$enabled || $dir === '') {
        break;
    }
    $n = 0;
    if ($paths === null) {
        $s = opcache_get_status(true);
        foreach (is_array($s) ? array_keys($s['scripts'] ?? []) : [] as $full) {
            if (strncmp($full, $dir, strlen($dir)) === 0 && opcache_invalidate($full, true)) {
                $n++;
            }
        }
    } else {
        foreach ($paths as $p) {
            if (opcache_invalidate($dir . ltrim((string)$p, '/'), true)) {
                $n++;
            }
        }
    }
    $out['done'] = $n;
    break;
case 'compile':
    // compile paths (relative to dir) into OPcache; failures are listed
    $n = 0;
    $failed = [];
    foreach ($enabled && $paths !== null ? $paths : [] as $p) {
        $full = $dir . ltrim((string)$p, '/');
        if (opcache_is_script_cached($full)) {
            continue;
        }
        try {
            if (@opcache_compile_file($full)) {
                $n++;
            } else {
                $failed[] = $full;
            }
        } catch (\Throwable $e) {
            $failed[] = $full;
        }
    }
    $out['done'] = $n;
    $out['failed'] = array_slice($failed, 0, 20);
    $out['failed_count'] = count($failed);
    break;
default:
    http_response_code(400);
    $out = ['ok' => false, 'error' => 'loopcast-opcache: unknown op ' . $in['op']];
}
$out['status'] = loopcast_status($enabled);
echo json_encode($out);
