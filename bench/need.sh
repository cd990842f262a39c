# Sourced by the bench scripts (not run by itself).
#
#   need COMMAND DEBIAN_PACKAGE
#
# Installs the package when COMMAND is missing and this runs as root; otherwise says how to
# install it and stops.
need() {
  command -v "$1" >/dev/null 2>&1 && return
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else
    echo "bench: '$1' is missing; install it with: sudo apt-get install -y $2" >&2
    exit 1
  fi
}
