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
    ];
}

switch ($in['op']) {
case 'status':
    break;
case 'busy':
    // the scripts of the pool's requests running under dir, but this one
    $busy = [];
    $self = $_SERVER['SCRIPT_FILENAME'] ?? '';
    $fpm = function_exists('fpm_get_status') ? fpm_get_status() : false;
    if (!is_array($fpm)) {
        $out = ['ok' => false, 'error' => 'loopcast-opcache: fpm_get_status() is not available'];
        break;
    }
    foreach ($fpm['procs'] as $p) {
        $script = (string)($p['script'] ?? '');
        if (($p['state'] ?? '') === 'Running' && $script !== $self && $dir !== '' && strncmp($script, $dir, strlen($dir)) === 0) {
            $busy[] = $script;
        }
    }
    $out['busy'] = $busy;
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
