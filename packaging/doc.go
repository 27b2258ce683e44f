// Package packaging holds no code: it is the home of the files that put an
// agent on a web server, and of the tests that check them with the real
// tools.
//
//	loopcast-receiver.service  systemd unit (Type=notify, before nginx and php-fpm)
//	receiver.env               the agent's settings, LOOPCAST_* for each flag
//	nginx-loopcast.conf        server block serving current via $realpath_root
//	php-fpm-loopcast.conf      php-fpm pool on the socket the server block uses
//	app-worker@.service        a long-running job on one release (receiver exec)
package packaging
