# Sourced by setup.sh and bench-setup.sh. Needs log() and $SUDO (empty when root).
#   apt_refresh        apt-get update, once per run
#   apt_install PKG... installs the packages that are not installed yet

apt_updated=
apt_refresh() {
  [ -n "$apt_updated" ] && return 0
  log "apt-get update"
  $SUDO apt-get update -q >/dev/null
  apt_updated=1
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_refresh
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}
