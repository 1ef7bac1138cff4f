#!/bin/sh
# Starts sshd in the foreground, with a host key that survives restarts when /etc/ssh/keys is a
# volume, and the authorized keys from $AUTHORIZED_KEYS or /config/authorized_keys: restricted to
# the guard unless GUARD=off.
set -eu
if [ ! -s /etc/ssh/keys/ssh_host_ed25519_key ]; then
  ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/keys/ssh_host_ed25519_key
fi
keys=
if [ -n "${AUTHORIZED_KEYS:-}" ]; then
  keys=$AUTHORIZED_KEYS
elif [ -f /config/authorized_keys ]; then
  keys=$(cat /config/authorized_keys)
fi
if [ -f /config/guard.conf ]; then
  cp /config/guard.conf /etc/backup-sidecar/guard.conf
fi
guard=/usr/local/lib/backup-sidecar/guard
case "${GUARD:-on}" in
  on)
    printf '%s\n' "$keys" | sed -e '/^[[:space:]]*$/d' -e "s|^|restrict,command=\"$guard\" |" \
      > /root/.ssh/authorized_keys
    root_login=forced-commands-only ;;
  off)
    printf '%s\n' "$keys" > /root/.ssh/authorized_keys
    root_login=prohibit-password ;;
  *) echo "remote: GUARD must be on or off" >&2; exit 2 ;;
esac
chmod 600 /root/.ssh/authorized_keys
# The mirror directory and the reader user; the repository is made by `guard --setup` with its
# passphrase on stdin (or by `backup-sidecar init`).
"$guard" --setup </dev/null >/dev/null
echo "remote: guard ${GUARD:-on}; host key $(ssh-keygen -l -f /etc/ssh/keys/ssh_host_ed25519_key.pub)"
exec /usr/sbin/sshd -D -e -o PermitRootLogin=$root_login
