#!/bin/bash
# Build "mini-HAOS": a raw GPT disk image that behaves like Home Assistant OS wherever havm cares
# (see test/guest/README.md). Built from Debian packages only, without loop mounts or root-only tools.
# Needs on the host: apt-get, dpkg-deb, cpio, gzip, mkfs.fat (dosfstools), mtools, mke2fs (e2fsprogs),
# sfdisk (fdisk), flock (util-linux); readelf (binutils) if present.
#
# usage: build-minihaos.sh [amd64|arm64] OUTDIR
#   writes OUTDIR/disk.img and OUTDIR/layout.env (DATA_OFFSET, KVER, TOKEN, ARCH)
# env:   MINIHAOS_TOKEN  API bearer token stored on the data partition (default: minihaos-test-token)
#        CACHE           where the private apt state and the downloaded .debs are kept (default: $PWD/cache)
# Behaviour knobs are plain files on the ext4 data partition; change them without mounting or booting
# (test/guest/guest.ts setGuestKnobs does: debugfs -w "disk.img?offset=DATA_OFFSET").
set -euo pipefail
ARCH=${1:-amd64}
OUT=${2:?usage: build-minihaos.sh ARCH OUTDIR}
TOKEN=${MINIHAOS_TOKEN:-minihaos-test-token}
CACHE=${CACHE:-$PWD/cache}
T0=$(date +%s%N)
t() { echo "[$(( ($(date +%s%N) - T0) / 1000000 )) ms] $*"; }

case $ARCH in
  amd64) TRIPLET=x86_64-linux-gnu; LDSO=lib64/ld-linux-x86-64.so.2; EFIBOOT=BOOTX64.EFI; SDBOOT=systemd-bootx64.efi ;;
  arm64) TRIPLET=aarch64-linux-gnu; LDSO=lib/ld-linux-aarch64.so.1; EFIBOOT=BOOTAA64.EFI; SDBOOT=systemd-bootaa64.efi ;;
  *) echo "unsupported arch $ARCH" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------- 1. debs
# Private apt state per arch (no dpkg --add-architecture: the host is untouched). One builder at a time
# per cache: apt's partial downloads are not safe to share.
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock-$ARCH"; flock 9
APTD=$CACHE/apt-$ARCH
DEBS=$CACHE/debs-$ARCH
mkdir -p "$APTD/lists/partial" "$APTD/cache/archives/partial" "$DEBS"
APT=(apt-get -o APT::Architecture=$ARCH -o APT::Architectures::=$ARCH
     -o Dir::State::Lists=$APTD/lists -o Dir::Cache=$APTD/cache
     -o Dir::State::status=/dev/null -o Debug::NoLocking=1 -q)
APTC=(apt-cache -o APT::Architecture=$ARCH -o APT::Architectures::=$ARCH
      -o Dir::State::Lists=$APTD/lists -o Dir::Cache=$APTD/cache
      -o Dir::State::status=/dev/null)
if [ ! -e "$APTD/stamp" ]; then
  "${APT[@]}" update >/dev/null
  touch "$APTD/stamp"
fi
KPKG=$("${APTC[@]}" depends linux-image-$ARCH | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
# userland: busybox, dropbear (+libs), sfdisk and resize2fs for the hassos-expand stand-in (+libs)
USERPKGS="busybox-static dropbear-bin libtomcrypt1 libtommath1 libc6 zlib1g libcrypt1 libgmp10 systemd-boot-efi
  fdisk libfdisk1 libsmartcols1 libtinfo6 libreadline8 libuuid1 libblkid1 e2fsprogs libext2fs2 libcom-err2"
STAMP="$DEBS/.done-$KPKG-$(echo $USERPKGS | md5sum | cut -c1-8)"
if [ ! -e "$STAMP" ]; then
  (cd "$DEBS" && chmod 777 . && "${APT[@]}" download $KPKG $USERPKGS 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  for p in $KPKG $USERPKGS; do ls "$DEBS"/${p}_*.deb >/dev/null 2>&1 || { echo "missing package $p" >&2; exit 1; }; done
  touch "$STAMP"
fi
t "debs ready ($KPKG)"

# ---------------------------------------------------------------- 2. extract
mkdir -p "$OUT"
W=$OUT/work
rm -rf "$W"; mkdir -p "$W"/{k,x,root,data}
# kernel: vmlinuz and only the module subtrees that can hold the modules we want (+ deps)
KD='./lib/modules/*/kernel'
dpkg-deb --fsys-tarfile "$(ls "$DEBS"/${KPKG}_*.deb | head -1)" | tar -x -C "$W/k" --wildcards './boot/vmlinuz-*' \
  "$KD/drivers/virtio/*" "$KD/drivers/block/*" "$KD/drivers/net/virtio_net.ko" "$KD/drivers/net/net_failover.ko" \
  "$KD/net/core/*" "$KD/drivers/usb/*" "$KD/drivers/scsi/*" "$KD/drivers/nvme/*" "$KD/fs/*" "$KD/lib/*" \
  "$KD/crypto/*" "$KD/block/*" "$KD/drivers/input/*" "$KD/drivers/acpi/*" "$KD/drivers/char/*" \
  "$KD/drivers/gpio/*" "$KD/arch/*"
KVER=$(ls "$W/k/lib/modules")
for p in $USERPKGS; do dpkg-deb -x "$(ls "$DEBS"/${p}_*.deb | head -1)" "$W/x"; done
t "extracted (kernel $KVER)"

# ---------------------------------------------------------------- 3. initramfs
R=$W/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,mnt/data,mnt/config,root,var/log,lib/$TRIPLET,lib64}
chmod 700 "$R/root"; chmod 1777 "$R/tmp"
ln -s /proc/mounts "$R/etc/mtab"   # resize2fs looks for mounted filesystems there
cp "$W/x/bin/busybox" "$R/bin/busybox"
cp "$W/x/usr/sbin/dropbear" "$R/usr/sbin/"; cp "$W/x/usr/bin/dropbearkey" "$R/usr/bin/"
cp "$W/x/sbin/sfdisk" "$R/usr/sbin/sfdisk"; cp "$W/x/sbin/resize2fs" "$R/usr/sbin/resize2fs"
# shared libraries: the NEEDED closure of the binaries above, looked up in the extracted packages
needed() { # ELF file -> NEEDED sonames (readelf when present, else a scan of its strings that over-approximates)
  if command -v readelf >/dev/null; then readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
  else grep -aoE 'lib[a-z0-9_+-]+\.so\.[0-9]+' "$1" | sort -u; fi
}
declare -A LIBSEEN
add_libs() {
  local so f
  for so in $(needed "$1"); do
    [ -n "${LIBSEEN[$so]:-}" ] && continue; LIBSEEN[$so]=1
    case $so in ld-linux*) continue ;; esac
    f=$(find "$W/x" -name "$so" | head -1)
    if [ -z "$f" ]; then
      command -v readelf >/dev/null || continue   # the string scan may name libraries that are not needed
      echo "library $so (for $1) not found in the extracted packages" >&2; exit 1
    fi
    cp -L "$f" "$R/lib/$TRIPLET/$so"; add_libs "$R/lib/$TRIPLET/$so"
  done
}
for b in usr/sbin/dropbear usr/bin/dropbearkey usr/sbin/sfdisk usr/sbin/resize2fs; do add_libs "$R/$b"; done
cp -L "$W/x/$LDSO" "$R/$LDSO" 2>/dev/null || cp -L "$(find "$W/x" -name "$(basename $LDSO)" | head -1)" "$R/$LDSO"

# modules: dependency closure computed from modinfo "depends=" (arch independent)
MODS_WANTED="crc32c_generic crct10dif_generic virtio_pci virtio_blk virtio_net virtio_mmio virtio_scsi nvme
  xhci_pci xhci_hcd usb_storage sd_mod vfat fat nls_cp437 nls_iso8859_1 nls_ascii nls_utf8 ext4 efivarfs
  evdev button gpio_keys pl061 virtio_rng"
MD=$W/k/lib/modules/$KVER
find "$MD/kernel" -name '*.ko' > "$W/modlist"
declare -A MPATH; while read -r f; do n=${f##*/}; n=${n%.ko}; MPATH[${n//-/_}]=$f; done < "$W/modlist"
declare -A SEEN; ORDER=()
add_mod() {
  local n=${1//-/_}; [ -n "${SEEN[$n]:-}" ] && return 0
  local f=${MPATH[$n]:-}; [ -z "$f" ] && return 0   # builtin or absent
  SEEN[$n]=1
  local deps; deps=$(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | head -1 | tr ',' ' ')
  for d in $deps; do add_mod "$d"; done
  ORDER+=("$n")
}
for m in $MODS_WANTED; do add_mod "$m"; done
RM=$R/lib/modules/$KVER; mkdir -p "$RM"
: > "$R/etc/modules.order"
for n in "${ORDER[@]}"; do
  f=${MPATH[$n]}; rel=${f#$MD/}; mkdir -p "$RM/$(dirname "$rel")"; cp "$f" "$RM/$rel"
  echo "$n /lib/modules/$KVER/$rel" >> "$R/etc/modules.order"   # load order = deps first
done
# modules.dep/alias for the subset so the kernel's request_module() works in the guest
HOSTBB=$(command -v busybox || true)
if [ -z "$HOSTBB" ] || ! "$HOSTBB" depmod --help >/dev/null 2>&1; then
  HOSTBB=$CACHE/busybox-host
  if [ ! -x "$HOSTBB" ]; then
    ( cd "$CACHE" && apt-get download -q busybox-static >/dev/null 2>&1 \
      && dpkg-deb --fsys-tarfile busybox-static_*_$(dpkg --print-architecture).deb | tar -xO ./bin/busybox > busybox-host \
      && chmod +x busybox-host && rm -f busybox-static_*.deb )
  fi
fi
"$HOSTBB" depmod -b "$R" "$KVER"
t "initramfs files (${#ORDER[@]} modules)"

# ---- config files
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
echo 'root:*:19000:0:99999:7:::' > "$R/etc/shadow"; chmod 600 "$R/etc/shadow"
echo 'root:x:0:' > "$R/etc/group"
echo '/bin/sh' > "$R/etc/shells"
echo homeassistant > "$R/etc/hostname"
cat > "$R/etc/os-release" <<'EOF'
NAME="Home Assistant OS"
VERSION="0.0 (mini-HAOS test stand-in)"
ID=haos
VERSION_ID=0.0
PRETTY_NAME="Home Assistant OS 0.0 (mini-HAOS)"
EOF
cat > "$R/etc/inittab" <<'EOF'
::sysinit:/etc/rc.sysinit
::respawn:/usr/sbin/ha-core
::respawn:/usr/sbin/ssh-svc
::respawn:/sbin/acpid -f -c /etc/acpi -l /var/log/acpid.log
::shutdown:/etc/rc.shutdown
EOF
mkdir -p "$R/etc/acpi/PWRF"
# generic HAOS boards ignore a short power-key press (HandlePowerKey=ignore): the image ships ignore_acpi.
cat > "$R/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
if [ -e /mnt/data/ignore_acpi ]; then echo "MINIHAOS: ACPI power button ignored (ignore_acpi)" > /dev/console; exit 0; fi
echo acpi > /run/shutdown_reason
echo "MINIHAOS: ACPI power button -> poweroff" > /dev/console
exec /sbin/poweroff
EOF
chmod 755 "$R/etc/acpi/PWRF/00000080"

cat > "$R/etc/udhcpc.script" <<'EOF'
#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    : > /etc/resolv.conf; for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "$ip" > /run/ip
    echo "MINIHAOS: dhcp $1 ip=$ip router=$router" > /dev/console ;;
esac
exit 0
EOF
chmod 755 "$R/etc/udhcpc.script"

cat > "$R/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts; mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=755 tmpfs /run
echo "MINIHAOS: init up at $(cut -d' ' -f1 /proc/uptime)s" > /dev/console
exec /sbin/init
EOF
chmod 755 "$R/init"

cat > "$R/etc/rc.sysinit" <<'EOF'
#!/bin/sh
# one-shot boot sequence (busybox init ::sysinit)
log() { echo "MINIHAOS: $* [$(cut -d' ' -f1 /proc/uptime)s]" > /dev/console; }
hostname -F /etc/hostname
ip link set lo up
# load modules deps-first; missing/failed ones are fine
while read -r n p; do
  case $n in usb_storage) insmod "$p" delay_use=0 ;; *) insmod "$p" ;; esac 2>/dev/null
done < /etc/modules.order
log "modules loaded"
mkdir -p /sys/firmware/efi/efivars 2>/dev/null && mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
# network (DHCP like HAOS)
IF=$(ls /sys/class/net | grep -v '^lo$' | head -1)
if [ -n "$IF" ]; then
  udhcpc -i "$IF" -s /etc/udhcpc.script -x hostname:homeassistant -F homeassistant \
     -t 20 -T 1 -A 2 -b -p /run/udhcpc.pid >/dev/null 2>&1
fi
# persistent data partition
D=/mnt/data
dev=
for i in $(seq 1 50); do dev=$(findfs LABEL=hassos-data 2>/dev/null) && break; usleep 100000; done
# hassos-expand stand-in: move the backup GPT to the end of a grown disk and grow hassos-data to fill it
# (before mounting, like HAOS; the filesystem is grown online after the mount, like systemd-growfs).
grown=no
if [ -n "$dev" ]; then
  name=${dev#/dev/}; sysp=/sys/class/block/$name; disk_sys=$(readlink -f $sysp/..); disk=/dev/${disk_sys##*/}
  part=$(cat $sysp/partition); end=$(( $(cat $sysp/start) + $(cat $sysp/size) ))
  total=$(cat $disk_sys/size)
  # 33 sectors hold the backup GPT; grow only when at least 1 MiB is free behind the partition
  if [ $(( total - 34 - end )) -ge 2048 ]; then
    sfdisk -q --relocate gpt-bak-std "$disk" >/dev/null 2>&1
    if echo ',+' | sfdisk -q --no-reread -N "$part" "$disk" >/dev/null 2>&1; then
      blockdev --rereadpt "$disk" 2>/dev/null
      for i in $(seq 1 20); do [ -e "$dev" ] && break; usleep 100000; done
      grown=yes
      log "expand: $disk partition $part grown to $(cat $sysp/size 2>/dev/null) sectors"
    else
      log "expand: sfdisk failed"
    fi
  fi
fi
echo $grown > /run/expanded
if [ -n "$dev" ] && mount -t ext4 -o noatime "$dev" $D; then
  if [ $grown = yes ] || [ ! -e $D/.fs_grown_to ] || [ "$(cat $D/.fs_grown_to)" != "$(cat /sys/class/block/${dev#/dev/}/size)" ]; then
    resize2fs "$dev" >/dev/null 2>&1 && cat /sys/class/block/${dev#/dev/}/size > $D/.fs_grown_to
  fi
  n=$(cat $D/boot_count 2>/dev/null || echo 0); n=$((n+1)); echo $n > $D/boot_count
  prev=$(cat $D/run_state 2>/dev/null || echo none); echo "$prev" > /run/prev_shutdown
  echo running > $D/run_state
  # sizes a test can read back (also from the image with debugfs): disk and data partition in bytes
  echo $(( $(cat /sys/class/block/${disk#/dev/}/size) * 512 )) > $D/disk_size
  echo $(( $(cat /sys/class/block/${dev#/dev/}/size) * 512 )) > $D/data_size
  df -k $D | awk 'NR==2{print $2*1024}' > $D/fs_size
  cat /sys/class/net/$IF/address > $D/mac 2>/dev/null
  echo "boot $n previous=$prev disk=$(cat $D/disk_size) data=$(cat $D/data_size) expanded=$grown mac=$(cat $D/mac)" >> $D/history
  sync
  log "data mounted ($dev) boot_count=$n previous_shutdown=$prev"
else
  log "WARNING: no data partition"
fi
# NVRAM persistence probe: one new non-volatile EFI variable per boot
EV=/sys/firmware/efi/efivars; G=3f1a0b5e-8c1d-4b6e-9a2f-6d696e696861
if grep -q " $EV efivarfs" /proc/mounts; then
  c=$(ls $EV | grep -c "^MiniHaosBoot[0-9]*-$G\$"); echo $c > /run/nvram_prev_boots
  [ $c -lt 64 ] && printf '\007\000\000\000boot%s' $((c+1)) > $EV/MiniHaosBoot$((c+1))-$G 2>/dev/null
  log "nvram: saw $c previous boots"
else echo -1 > /run/nvram_prev_boots; fi
echo $(cat /run/nvram_prev_boots) > $D/nvram_previous_boots 2>/dev/null
# CONFIG import like HAOS (hassos-config): a filesystem labelled CONFIG (usb stick or any disk)
mkdir -p /root/.ssh; chmod 700 /root/.ssh
config=none
cdev=
for i in $(seq 1 40); do   # up to 4 s, but stop early if no usb-storage device is bound
  cdev=$(findfs LABEL=CONFIG 2>/dev/null) && break
  cdev=
  [ $i -ge 15 ] && ! ls /sys/bus/usb/drivers/usb-storage/ 2>/dev/null | grep -q ':' && break
  usleep 100000
done
if [ -n "$cdev" ] && mount -o ro "$cdev" /mnt/config; then
  if [ -f /mnt/config/authorized_keys ]; then
    mkdir -p $D/ssh; cp /mnt/config/authorized_keys $D/ssh/authorized_keys; chmod 600 $D/ssh/authorized_keys
    config=imported
  else
    # HAOS: a CONFIG source without authorized_keys removes the keys (and dropbear stays off)
    rm -f $D/ssh/authorized_keys
    config=removed
  fi
  umount /mnt/config
  log "CONFIG $cdev found: authorized_keys $config"
else
  log "no CONFIG source"
fi
echo $config > /run/config_imported; echo $config > $D/config_import
rm -f /root/.ssh/authorized_keys
if [ -f $D/ssh/authorized_keys ]; then
  cp $D/ssh/authorized_keys /root/.ssh/authorized_keys; chmod 600 /root/.ssh/authorized_keys
fi
data-checkpoint
log "sysinit done"
EOF
chmod 755 "$R/etc/rc.sysinit"

cat > "$R/etc/rc.shutdown" <<'EOF'
#!/bin/sh
reason=$(cat /run/shutdown_reason 2>/dev/null || echo poweroff)
echo "MINIHAOS: shutting down (reason=$reason) [$(cut -d' ' -f1 /proc/uptime)s]" > /dev/console
killall dropbear nc 2>/dev/null
d=$(cat /mnt/data/shutdown_delay 2>/dev/null || echo 0)
[ "$d" -gt 0 ] 2>/dev/null && { echo "MINIHAOS: slow shutdown, sleeping ${d}s" > /dev/console; sleep "$d"; }
if grep -q " /mnt/data " /proc/mounts; then
  echo "clean:$reason" > /mnt/data/run_state
  echo "shutdown $reason command=$(cat /run/shutdown_command 2>/dev/null || echo none)" >> /mnt/data/history
  sync
  umount /mnt/data || mount -o remount,ro /mnt/data
fi
sync
EOF
chmod 755 "$R/etc/rc.shutdown"

# dropbear on 22222 only if keys exist (HAOS: dropbear.service has ConditionPathExists on authorized_keys).
# Host keys are persisted on the data partition.
cat > "$R/usr/sbin/ssh-svc" <<'EOF'
#!/bin/sh
if [ ! -s /root/.ssh/authorized_keys ]; then exec sleep 2147483647; fi
K=/mnt/data/dropbear; mkdir -p $K
[ -f $K/ed25519 ] || dropbearkey -t ed25519 -f $K/ed25519 >/dev/null 2>&1
[ -f $K/ecdsa ] || dropbearkey -t ecdsa -f $K/ecdsa >/dev/null 2>&1
data-checkpoint
echo "MINIHAOS: dropbear starting on 22222 [$(cut -d' ' -f1 /proc/uptime)s]" > /dev/console
exec dropbear -F -E -s -p 22222 -r $K/ed25519 -r $K/ecdsa 2>>/var/log/dropbear.log
EOF
chmod 755 "$R/usr/sbin/ssh-svc"

# After the boot-time writes: flush the ext4 journal (a freeze checkpoints it), so that after a hard stop
# the host reads the record with debugfs (which ignores the journal) and its edits are not undone by a
# journal replay at the next mount.
cat > "$R/usr/sbin/data-checkpoint" <<'EOF'
#!/bin/sh
sync
grep -q " /mnt/data " /proc/mounts && fsfreeze --freeze /mnt/data && fsfreeze --unfreeze /mnt/data
exit 0
EOF
chmod 755 "$R/usr/sbin/data-checkpoint"

# systemd-like shutdown: no time argument means "+1" minute, like systemd.
cat > "$R/sbin/shutdown" <<'EOF'
#!/bin/sh
act=poweroff; when=+1
for a in "$@"; do case "$a" in
  -r|--reboot) act=reboot ;; -h|-P|--poweroff|--halt|-H) act=poweroff ;;
  now) when=0 ;; +*) when=$a ;; -c) kill $(cat /run/shutdown.pid 2>/dev/null) 2>/dev/null; exit 0 ;;
esac; done
echo ssh > /run/shutdown_reason
echo "shutdown $*" > /run/shutdown_command
secs=0; case "$when" in +*) secs=$(( ${when#+} * 60 )) ;; esac
if [ $secs -eq 0 ]; then exec /sbin/$act; fi
echo "Shutdown scheduled in ${when#+} min, use 'shutdown -c' to cancel."
( sleep $secs; /sbin/$act ) </dev/null >/dev/null 2>&1 & echo $! > /run/shutdown.pid
EOF
chmod 755 "$R/sbin/shutdown"

# The `ha` CLI (Supervisor client) as reached over SSH on 22222: only what havm uses.
cat > "$R/usr/bin/ha" <<'EOF'
#!/bin/sh
case "$1 $2" in
  "host shutdown"|"host reboot")
    act=poweroff; [ "$2" = reboot ] && act=reboot
    if [ -e /mnt/data/ignore_shutdown ]; then   # a stuck Supervisor: acknowledged, nothing happens
      echo "MINIHAOS: ha host $2 ignored (ignore_shutdown)" > /dev/console; echo "Command completed successfully."; exit 0
    fi
    echo ssh > /run/shutdown_reason
    echo "ha host $2" > /run/shutdown_command
    echo "MINIHAOS: ha host $2 [$(cut -d' ' -f1 /proc/uptime)s]" > /dev/console
    ( sleep 1; /sbin/$act ) </dev/null >/dev/null 2>&1 &
    echo "Command completed successfully." ;;
  "info "|"os info") echo "hostname: homeassistant"; echo "operating_system: Home Assistant OS 0.0 (mini-HAOS)" ;;
  *) echo "Error: unknown command '$*'" >&2; exit 1 ;;
esac
EOF
chmod 755 "$R/usr/bin/ha"

# Home Assistant Core stand-in: busybox nc on 8123 (or 80 with the port80 knob) + per-connection handler
cat > "$R/usr/sbin/ha-core" <<'EOF'
#!/bin/sh
port=8123; [ -e /mnt/data/port80 ] && port=80
if [ ! -e /run/ha_started ]; then
  d=$(cat /mnt/data/ha_start_delay 2>/dev/null || echo 0); [ "$d" -gt 0 ] 2>/dev/null && sleep "$d"
  touch /run/ha_started
  if [ -e /mnt/data/no_http ]; then echo "MINIHAOS: HA core never answers (no_http)" > /dev/console; exec sleep 2147483647; fi
  echo "MINIHAOS: HA core listening on $port [$(cut -d' ' -f1 /proc/uptime)s]" > /dev/console
fi
[ -e /mnt/data/no_http ] && exec sleep 2147483647
exec nc -ll -p $port -e /usr/sbin/ha-http
EOF
chmod 755 "$R/usr/sbin/ha-core"

cat > "$R/usr/sbin/ha-http" <<'EOF'
#!/bin/sh
CR=$(printf '\r')
D=/mnt/data
TOKEN=$(cat $D/token 2>/dev/null)
# accept the connection, never answer (a hung HA Core)
[ -e $D/http_hang ] && exec sleep 3600
reply() { # status ctype body
  printf 'HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %s\r\nServer: Python/3.13 aiohttp/3.11\r\nConnection: close\r\n\r\n%s' \
    "$1" "$2" "${#3}" "$3"; exit 0; }
read -t 10 -r method target proto || exit 0
auth=; clen=0
while IFS= read -t 10 -r line; do
  line=${line%"$CR"}; [ -z "$line" ] && break
  case "$line" in
    [Aa]uthorization:*) auth=${line#*:}; auth=${auth# } ;;
    [Cc]ontent-[Ll]ength:*) clen=${line#*:}; clen=${clen# } ;;
  esac
done
[ "${clen:-0}" -gt 0 ] 2>/dev/null && body=$(head -c "$clen")
path=${target%%\?*}
authed() { [ -n "$TOKEN" ] && [ "$auth" = "Bearer $TOKEN" ]; }
case "$path" in
  /api|/api/*) authed || reply "401 Unauthorized" "text/plain; charset=utf-8" "401: Unauthorized" ;;
esac
num() { v=$(cat "$1" 2>/dev/null); case "$v" in ''|*[!0-9-]*) echo 0 ;; *) echo "$v" ;; esac; }
case "$method $path" in
  "GET /") reply "200 OK" "text/html; charset=utf-8" "<!DOCTYPE html><html><head><title>Home Assistant</title></head><body>mini-HAOS</body></html>" ;;
  "GET /manifest.json") reply "200 OK" "application/manifest+json" '{"name":"Home Assistant","short_name":"Home Assistant"}' ;;
  "GET /api/") reply "200 OK" "application/json" '{"message":"API running."}' ;;
  "GET /api/config") reply "200 OK" "application/json" '{"location_name":"Home","version":"2025.1.0","state":"RUNNING"}' ;;
  "GET /api/minihaos/state")
    reply "200 OK" "application/json" "{\"boot_count\":$(num $D/boot_count),\"previous_shutdown\":\"$(cat /run/prev_shutdown)\",\"nvram_previous_boots\":$(num /run/nvram_prev_boots),\"config_imported\":\"$(cat /run/config_imported)\",\"ssh_keys\":$([ -s /root/.ssh/authorized_keys ] && echo true || echo false),\"hostname\":\"$(hostname)\",\"ip\":\"$(cat /run/ip 2>/dev/null)\",\"mac\":\"$(cat $D/mac 2>/dev/null)\",\"disk_size\":$(num $D/disk_size),\"data_size\":$(num $D/data_size),\"fs_size\":$(num $D/fs_size),\"expanded\":\"$(cat /run/expanded)\",\"ignore_acpi\":$([ -e $D/ignore_acpi ] && echo true || echo false),\"uptime\":\"$(cut -d' ' -f1 /proc/uptime)\"}" ;;
  "POST /api/services/hassio/host_shutdown"|"POST /api/services/hassio/host_reboot")
    act=poweroff; case "$path" in *reboot) act=reboot ;; esac
    if [ -e $D/ignore_shutdown ]; then
      echo "MINIHAOS: $path ignored (ignore_shutdown)" > /dev/console; reply "200 OK" "application/json" '[]'
    fi
    echo api > /run/shutdown_reason
    echo "POST $path" > /run/shutdown_command
    ( sleep 1; /sbin/$act ) </dev/null >/dev/null 2>&1 &
    # like HA Core being stopped under the caller: the connection is cut, no answer
    [ -e $D/drop_on_shutdown ] && exit 0
    reply "200 OK" "application/json" '[]' ;;
  "GET /api/services/"*) reply "405 Method Not Allowed" "text/plain; charset=utf-8" "405: Method Not Allowed" ;;
  *) reply "404 Not Found" "text/plain; charset=utf-8" "404: Not Found" ;;
esac
EOF
chmod 755 "$R/usr/sbin/ha-http"

(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 > "$W/initrd.img"
t "initramfs $(du -h "$W/initrd.img" | cut -f1)"

# ---------------------------------------------------------------- 4. ESP (FAT, no mount)
ESP_MB=32; DATA_MB=64; [ $ARCH = arm64 ] && ESP_MB=64   # arm64 Image is ~33 MB uncompressed
VMLINUZ=$(ls "$W"/k/boot/vmlinuz-*)
if [ $ARCH = arm64 ]; then
  # Debian arm64 vmlinuz is a gzip'ed Image; the EFI stub needs it uncompressed
  if gzip -t "$VMLINUZ" 2>/dev/null; then gzip -dc "$VMLINUZ" > "$W/vmlinuz"; else cp "$VMLINUZ" "$W/vmlinuz"; fi
  CONSOLE="console=ttyAMA0"
else
  cp "$VMLINUZ" "$W/vmlinuz"; CONSOLE="console=ttyS0,115200"
fi
CMDLINE="$CONSOLE loglevel=4 panic=10"
ESP=$W/esp.img
mkfs.fat -C -F 16 -n HASSOS-BOOT "$ESP" $((ESP_MB*1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$ESP" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$ESP" "$W/x/usr/lib/systemd/boot/efi/$SDBOOT" ::/EFI/BOOT/$EFIBOOT
printf 'default haos.conf\ntimeout 0\nconsole-mode keep\n' > "$W/loader.conf"
printf 'title Home Assistant OS (mini)\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' "$CMDLINE" > "$W/haos.conf"
echo "$CMDLINE" > "$W/cmdline.txt"
mcopy -i "$ESP" "$W/loader.conf" ::/loader/loader.conf
mcopy -i "$ESP" "$W/haos.conf" ::/loader/entries/haos.conf
mcopy -i "$ESP" "$W/cmdline.txt" ::/cmdline.txt
mcopy -i "$ESP" "$W/vmlinuz" ::/vmlinuz
mcopy -i "$ESP" "$W/initrd.img" ::/initrd.img
t "ESP built"

# ---------------------------------------------------------------- 5. data partition (ext4 via mke2fs -d)
echo -n "$TOKEN" > "$W/data/token"; chmod 600 "$W/data/token"
echo 0 > "$W/data/boot_count"
echo never-booted > "$W/data/run_state"
echo 0 > "$W/data/ha_start_delay"
echo 0 > "$W/data/shutdown_delay"
touch "$W/data/ignore_acpi"     # the default of generic HAOS images
: > "$W/data/history"
# -O ^resize_inode would forbid online growth beyond 1024x; keep the default (resize_inode) for growfs.
mke2fs -q -F -t ext4 -L hassos-data -E root_owner=0:0 -d "$W/data" "$W/data.img" ${DATA_MB}M >/dev/null
t "data fs built"

# ---------------------------------------------------------------- 6. GPT disk
IMG=$OUT/disk.img
rm -f "$IMG"; truncate -s $(( (1 + ESP_MB + DATA_MB + 1) * 1024 * 1024 )) "$IMG"
sfdisk -q "$IMG" <<EOF
label: gpt
start=2048, size=$((ESP_MB*2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="hassos-boot"
start=$(((1+ESP_MB)*2048)), size=$((DATA_MB*2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="hassos-data"
EOF
dd if="$ESP" of="$IMG" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$W/data.img" of="$IMG" bs=1M seek=$((1+ESP_MB)) conv=notrunc,sparse status=none
{
  echo "ARCH=$ARCH"
  echo "DATA_OFFSET=$(((1+ESP_MB)*1024*1024))"
  echo "KVER=$KVER"
  echo "TOKEN=$TOKEN"
} > "$OUT/layout.env"
rm -rf "$W"
t "disk image done: $IMG ($(du -h "$IMG" | cut -f1) allocated)"
