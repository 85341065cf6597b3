#!/bin/busybox sh
# /init of the vcrypto guest initramfs (built by src/vm/guest-image.ts).
#
# Mounts proc/sys/dev, loads the modules listed in /etc/vcrypto/modules (dependencies first),
# waits for the virtio_crypto driver's algorithms, runs the command given on the kernel command
# line as vcrypto.cmd=<base64> (default: /bin/probe), prints result markers the host parses,
# and powers off. Markers (each on its own line):
#   @@vcrypto:begin@@        the command starts (everything before is boot noise)
#   @@vcrypto:exit=<code>@@  the command's exit status
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp && mount -t tmpfs tmp /tmp

for m in $(cat /etc/vcrypto/modules); do
  insmod "/lib/modules/$m" || echo "vcrypto-init: insmod $m failed"
done

# virtio_crypto registers its algorithms when a device binds; the kernel self-tests them on
# registration. If a device is bound, wait (bounded, 10 s) until /proc/crypto lists the driver.
if ls /sys/bus/virtio/drivers/virtio_crypto 2>/dev/null | grep -q '^virtio'; then
  i=0
  while ! grep -q 'virtio_crypto_aes_cbc' /proc/crypto && [ $i -lt 200 ]; do
    sleep 0.05
    i=$((i + 1))
  done
fi

cmd=/bin/probe
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vcrypto.cmd=*) cmd=$(echo "${arg#vcrypto.cmd=}" | base64 -d) ;;
  esac
done

cd /tmp
echo "@@vcrypto:begin@@"
sh -c "$cmd"
rc=$?
echo "@@vcrypto:exit=$rc@@"
sync
poweroff -f
