#!/bin/busybox sh
# /init of the vcrypto guest initramfs (built by src/vm/guest-image.ts).
#
# Mounts proc/sys/dev, loads the modules listed in /etc/vcrypto/modules (dependencies first), runs
# the command given on the kernel command line as vcrypto.cmd=<base64> (default: /bin/probe), prints
# result markers the host parses, and powers off. Markers (each on its own line, on the console):
#   @@vcrypto:begin@@        the command starts (everything before is boot noise)
#   @@vcrypto:exit=<code>@@  the command's exit status
#
# Two ways to drive the virtio-crypto device (kernel command line vcrypto.pci=...):
#   (absent)        Linux's own virtio_crypto driver; the command talks to it through AF_ALG.
#   vfio | uio      the device is handed to user space before any driver binds it (driver_override:
#                   vfio-pci behind the virtual IOMMU, or uio_pci_generic with hugepages), the host's
#                   root is mounted read-only at /hostroot (9p) so Node and vcrypto run from it, and
#                   `vcrypto driver --pci --socket /run/vcrypto.sock` is started: the guest's
#                   /dev/cryptodevN. vcrypto.driver=0 leaves the device free for `--device pci`.
# Other options: vcrypto.node=<host path of node>, vcrypto.pkg=<host path of this package>,
# vcrypto.share=1 (9p tag 'share' at /share, read-write), vcrypto.net=1 (eth0 = 10.0.2.15/24 on QEMU
# user networking), vcrypto.stderr=1 (the command's stderr goes to /dev/ttyS1, apart from stdout).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /run && mount -t tmpfs tmp /tmp && mount -t tmpfs run /run

cmd=/bin/probe
pci=; driver=1; node=; pkg=; share=; net=; errtty=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vcrypto.cmd=*) cmd=$(echo "${arg#vcrypto.cmd=}" | base64 -d) ;;
    vcrypto.pci=*) pci=${arg#vcrypto.pci=} ;;
    vcrypto.driver=*) driver=${arg#vcrypto.driver=} ;;
    vcrypto.node=*) node=${arg#vcrypto.node=} ;;
    vcrypto.pkg=*) pkg=${arg#vcrypto.pkg=} ;;
    vcrypto.share=*) share=${arg#vcrypto.share=} ;;
    vcrypto.net=*) net=${arg#vcrypto.net=} ;;
    vcrypto.stderr=*) errtty=${arg#vcrypto.stderr=} ;;
  esac
done

say() { echo "vcrypto-init: $*"; }

if [ -n "$pci" ]; then
  # Hand every virtio-crypto function (1af4:1054) to the user-space driver before drivers load.
  case "$pci" in vfio) owner=vfio-pci ;; *) owner=uio_pci_generic ;; esac
  for d in /sys/bus/pci/devices/*; do
    if [ "$(cat $d/vendor)" = 0x1af4 ] && [ "$(cat $d/device)" = 0x1054 ]; then
      echo $owner > $d/driver_override
      # Linux 6.12 has virtio_pci built in: it bound the device at boot; let it go.
      [ -e $d/driver ] && echo ${d##*/} > $d/driver/unbind
    fi
  done
fi

for m in $(cat /etc/vcrypto/modules); do
  case "$m" in
    virtio_crypto.ko) [ -n "$pci" ] && continue ;;
    vfio_pci.ko|vfio_pci_core.ko|vfio_iommu_type1.ko|vfio.ko|vfio_virqfd.ko|irqbypass.ko) [ "$pci" = vfio ] || continue ;;
    uio.ko|uio_pci_generic.ko) [ "$pci" = uio ] || continue ;;
  esac
  params=
  # intremap=off on the virtual IOMMU: type1 must accept interrupts without remapping.
  [ "$m" = vfio_iommu_type1.ko ] && params=allow_unsafe_interrupts=1
  insmod "/lib/modules/$m" $params 2>/dev/null || case "$m" in
    9p.ko|9pnet*.ko|netfs.ko|fscache.ko|virtio_net.ko|net_failover.ko|failover.ko) ;; # optional
    *) say "insmod $m failed" ;;
  esac
done

if [ -n "$pci" ]; then
  # Functions unbound above (built-in virtio_pci) bind to their override now that it is loaded.
  for d in /sys/bus/pci/devices/*; do
    [ -e $d/driver ] || [ "$(cat $d/driver_override)" = "(null)" ] || echo ${d##*/} > /sys/bus/pci/drivers_probe
  done
fi

if [ -z "$pci" ]; then
  # virtio_crypto registers its algorithms when a device binds; the kernel self-tests them on
  # registration. If a device is bound, wait (bounded, 10 s) until /proc/crypto lists the driver.
  if ls /sys/bus/virtio/drivers/virtio_crypto 2>/dev/null | grep -q '^virtio'; then
    i=0
    while ! grep -q 'virtio_crypto_aes_cbc' /proc/crypto && [ $i -lt 200 ]; do
      sleep 0.05
      i=$((i + 1))
    done
  fi
fi

ip link set lo up 2>/dev/null
if [ "$net" = 1 ]; then
  ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 || say "network setup failed"
fi

if grep -q hostroot /sys/bus/virtio/drivers/9pnet_virtio/virtio*/mount_tag 2>/dev/null; then
  mkdir -p /hostroot
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /hostroot || say "mounting the host's root failed"
fi
if [ "$share" = 1 ]; then
  mkdir -p /share
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share /share || say "mounting /share failed"
fi

if [ -n "$node" ] && [ -x "/hostroot$node" ]; then
  # Node runs from the host's tree through its own dynamic loader: /lib64 and /lib/x86_64-linux-gnu
  # point into /hostroot (symlinks in the image), /proc and /sys stay the guest's (no chroot).
  ln -sf "/hostroot$node" /bin/node
  printf '#!/bin/sh\nexec /bin/node /hostroot%s/dist/cli/main.js "$@"\n' "$pkg" > /bin/vcrypto
  chmod 755 /bin/vcrypto
  export PATH=/bin:/usr/bin
  export HOME=/tmp
fi

if [ "$pci" = uio ]; then
  echo 8 > /proc/sys/vm/nr_hugepages
fi

if [ -n "$pci" ] && [ "$driver" = 1 ]; then
  if [ -x /bin/vcrypto ]; then
    vcrypto driver --pci --socket /run/vcrypto.sock > /tmp/driver.log 2>&1 &
    echo $! > /run/vcrypto-driver.pid
    i=0
    while ! grep -q '^vcrypto driver: serving' /tmp/driver.log && [ $i -lt 600 ]; do
      if ! kill -0 $! 2>/dev/null; then break; fi
      sleep 0.1
      i=$((i + 1))
    done
    grep -q '^vcrypto driver: serving' /tmp/driver.log || { say "vcrypto driver did not start:"; cat /tmp/driver.log; }
  else
    say "no Node in the guest (vcrypto.node): the driver service was not started"
  fi
fi

# Only emergencies on the console from here: the command's output is not mixed with kernel lines.
dmesg -n 1 2>/dev/null

cd /tmp
echo "@@vcrypto:begin@@"
if [ "$errtty" = 1 ]; then
  stty -F /dev/ttyS1 raw -echo 2>/dev/null
  sh -c "$cmd" 2>/dev/ttyS1
else
  sh -c "$cmd"
fi
rc=$?
echo "@@vcrypto:exit=$rc@@"
sync
poweroff -f
