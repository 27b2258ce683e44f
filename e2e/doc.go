// Package e2e holds the end-to-end tests: real deploys to a cluster of
// network namespaces (scripts/cluster.sh), each receiver running the agent
// and its own nginx + php-fpm, driven by the sender CLI, checked over HTTP.
package e2e
