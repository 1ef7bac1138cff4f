#!/bin/sh
# Starts sshd in the foreground, with a host key that survives restarts when /etc/ssh/keys is a
# volume, and the authorized keys from $AUTHORIZED_KEYS or /config/authorized_keys.
set -eu
if [ ! -s /etc/ssh/keys/ssh_host_ed25519_key ]; then
  ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/keys/ssh_host_ed25519_key
fi
if [ -n "${AUTHORIZED_KEYS:-}" ]; then
  printf '%s\n' "$AUTHORIZED_KEYS" > /root/.ssh/authorized_keys
elif [ -f /config/authorized_keys ]; then
  cp /config/authorized_keys /root/.ssh/authorized_keys
fi
chmod 600 /root/.ssh/authorized_keys 2>/dev/null || true
mkdir -p /backup/mirror
echo "remote: host key $(ssh-keygen -l -f /etc/ssh/keys/ssh_host_ed25519_key.pub)"
exec /usr/sbin/sshd -D -e
