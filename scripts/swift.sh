#!/usr/bin/env bash
# Usage: scripts/swift.sh start|stop|status DIR
# A one-node, all-in-one OpenStack Swift with the s3api + tempauth middlewares on 127.0.0.1: an S3
# endpoint that really checks SigV4 signatures and presigned-URL expiry (tests use it for that).
# Config, rings, data, logs and pid files all live under DIR; nothing in /etc is touched.
# Ports come from the environment (defaults in brackets): SWIFT_PROXY_PORT [8089],
# SWIFT_ACCOUNT_PORT [6212], SWIFT_CONTAINER_PORT [6211], SWIFT_OBJECT_PORT [6210],
# SWIFT_MEMCACHED_PORT [11219]. S3 credentials: access key test:tester, secret key testing,
# region us-east-1. Needs Debian's swift swift-proxy swift-account swift-container swift-object
# memcached (scripts/setup.sh installs them). Each server runs in its own process group.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
SERVERS=(memcached account container object proxy)

log() { printf '[swift] %s\n' "$*" >&2; }

port_of() {
  case $1 in
    account) echo "$ACCOUNT_PORT" ;;
    container) echo "$CONTAINER_PORT" ;;
    object) echo "$OBJECT_PORT" ;;
  esac
}

write_configs() {
  local etc=$dir/etc
  mkdir -p "$etc" "$dir/srv/d1" "$dir/run" "$dir/log"
  cat > "$dir/run/ports.env" <<EOF
SWIFT_PROXY_PORT=$PROXY_PORT
SWIFT_ACCOUNT_PORT=$ACCOUNT_PORT
SWIFT_CONTAINER_PORT=$CONTAINER_PORT
SWIFT_OBJECT_PORT=$OBJECT_PORT
SWIFT_MEMCACHED_PORT=$MEMCACHED_PORT
EOF
  cat > "$etc/swift.conf" <<EOF
[swift-hash]
swift_hash_path_suffix = owtrain-test
swift_hash_path_prefix = owtrain-test
[storage-policy:0]
name = Policy-0
default = yes
EOF
  local kind
  for kind in account container object; do
    cat > "$etc/$kind-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $(port_of "$kind")
workers = 1
user = root
swift_dir = $etc
devices = $dir/srv
mount_check = false
log_name = $kind-server
[pipeline:main]
pipeline = $kind-server
[app:$kind-server]
use = egg:swift#$kind
EOF
  done
  cat > "$etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $PROXY_PORT
workers = 1
user = root
swift_dir = $etc
log_name = proxy-server
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:s3api]
use = egg:swift#s3api
location = us-east-1
allow_no_owner = true
dns_compliant_bucket_names = true
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MEMCACHED_PORT
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
EOF
}

build_rings() {
  local etc=$dir/etc kind
  for kind in account container object; do
    rm -f "$etc/$kind.builder" "$etc/$kind.ring.gz"
    # 2^2 partitions, 1 replica, no minimum hours between moves: a one-disk test cluster.
    swift-ring-builder "$etc/$kind.builder" create 2 1 0 >/dev/null
    swift-ring-builder "$etc/$kind.builder" add "r1z1-127.0.0.1:$(port_of "$kind")/d1" 100 >/dev/null
    swift-ring-builder "$etc/$kind.builder" rebalance >/dev/null || true
  done
}

# Start one server in a new session (its own process group); remember the group leader's pid.
launch() {
  local name=$1; shift
  setsid "$@" >>"$dir/log/$name.log" 2>&1 </dev/null &
  echo $! > "$dir/run/$name.pid"
}

alive() { local pid; pid=$(cat "$dir/run/$1.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; }

start() {
  PROXY_PORT=${SWIFT_PROXY_PORT:-8089}
  ACCOUNT_PORT=${SWIFT_ACCOUNT_PORT:-6212}
  CONTAINER_PORT=${SWIFT_CONTAINER_PORT:-6211}
  OBJECT_PORT=${SWIFT_OBJECT_PORT:-6210}
  MEMCACHED_PORT=${SWIFT_MEMCACHED_PORT:-11219}
  for name in "${SERVERS[@]}"; do
    if alive "$name"; then log "$name already running in $dir; stop it first"; exit 1; fi
  done
  write_configs
  build_rings
  launch memcached memcached -u root -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64
  local kind
  for kind in account container object proxy; do
    launch "$kind" "swift-$kind-server" "$dir/etc/$kind-server.conf" -v
  done
  local url="http://127.0.0.1:$PROXY_PORT/healthcheck"
  for _ in $(seq 1 300); do
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url" 2>/dev/null; then
      log "ready: S3 endpoint http://127.0.0.1:$PROXY_PORT (access key test:tester, secret key testing)"
      return 0
    fi
    for name in "${SERVERS[@]}"; do
      if ! alive "$name"; then log "$name exited; see $dir/log/$name.log"; stop; exit 1; fi
    done
    sleep 0.2
  done
  log "proxy did not answer $url within 60 s; see $dir/log/"
  stop
  exit 1
}

stop() {
  local name pid
  for name in "${SERVERS[@]}"; do
    pid=$(cat "$dir/run/$name.pid" 2>/dev/null) || continue
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do
    local left=0
    for name in "${SERVERS[@]}"; do
      pid=$(cat "$dir/run/$name.pid" 2>/dev/null) || continue
      kill -0 -- "-$pid" 2>/dev/null && left=1
    done
    [ "$left" -eq 0 ] && break
    sleep 0.1
  done
  for name in "${SERVERS[@]}"; do
    pid=$(cat "$dir/run/$name.pid" 2>/dev/null) || continue
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$dir/run/$name.pid"
  done
}

status() {
  local name rc=0
  for name in "${SERVERS[@]}"; do
    if alive "$name"; then echo "$name: running (pid $(cat "$dir/run/$name.pid"))"; else echo "$name: stopped"; rc=3; fi
  done
  [ -f "$dir/run/ports.env" ] && grep PROXY "$dir/run/ports.env"
  return "$rc"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
