//! The volumes `/init` mounts: the private volume at `/home` and the template's root at
//! `/sysroot`, both served by the agent over NBD from the storage qube's block channels
//! (`linux-appvm/agent/src/blockdev/`), each a shell function of the generated script.

/// The part of `/init` that mounts the private volume ([`super::initramfs::init_script`]):
/// a shell function, run in the background once the agent is started, that waits for the
/// agent's `/run/home.ready` (the size in sectors) or `/run/home.failed`, and mounts the
/// volume at its argument (`/home`, or `/sysroot/home` under the template's root). Under the
/// template's root the file system is ext4, made by the template's `mke2fs` and checked by
/// its `e2fsck -p` before every mount (errors it cannot correct: no `/home`); in the
/// initramfs alone it is busybox's ext2, unchecked. With `appvm.nohome` on the command line
/// it mounts nothing and writes `/run/home.failed` (`not mounted: appvm.nohome`) once the
/// agent serves the volume: the storage benchmark's self-test then has the raw device.
pub const HOME_MOUNT: &str = r#"home_mount() {
    at="$1"
    i=0
    while [ ! -e /run/home.ready ] && [ ! -e /run/home.failed ] && [ "$i" -lt 600 ]; do
        sleep 0.1; i=$((i + 1))
    done
    if [ ! -e /run/home.ready ]; then
        echo "appvm: no /home volume ($(cat /run/home.failed 2>/dev/null || echo 'the agent did not serve /dev/nbd0'))"
        echo "not served" >> /run/home.failed
        return
    fi
    # `appvm.nohome` (`cargo xtask bench --storage`): served, never mounted, so a self-test
    # may measure the raw device; no /home.
    case " $(cat /proc/cmdline) " in *" appvm.nohome "*)
        echo "appvm: /home not mounted (appvm.nohome): /dev/nbd0 left to the self-test"
        echo "not mounted: appvm.nohome" > /run/home.failed
        return ;;
    esac
    read s _ < /proc/uptime; t0="${s%.*}${s#*.}"
    mib=$(($(cat /run/home.ready) / 2048))
    # Under the template's root its e2fsprogs make ext4 (with a journal) and check the file
    # system before each mount; the initramfs alone has busybox's ext2 and no fsck.
    e2() { chroot /sysroot /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
    fs=ext2
    [ "$at" = /sysroot/home ] && [ -x /sysroot/sbin/e2fsck ] && fs=ext4
    # The ext2/3/4 superblock's magic: 0xEF53, little-endian at byte 1080.
    set -- $(dd if=/dev/nbd0 bs=8 skip=135 count=1 2>/dev/null | od -An -tx1)
    if [ "$1$2" = "53ef" ]; then
        how=found
        if [ "$fs" = ext4 ]; then
            # `appvm.fsck=force` (a test's): the whole file system, not only its journal.
            force=
            case " $(cat /proc/cmdline) " in *" appvm.fsck=force "*) force=-f ;; esac
            e2 e2fsck -p $force /dev/nbd0 > /tmp/e2fsck.log 2>&1
            rc=$?
            # 0: clean; 1 and 2: errors corrected; 4 and more: errors left.
            echo "appvm: /home checked: e2fsck -p${force:+ $force} exit $rc: $(tail -n 1 /tmp/e2fsck.log)"
            [ "$rc" = 0 ] || sed 's/^/appvm: e2fsck: /' /tmp/e2fsck.log
            if [ "$rc" -ge 4 ]; then
                echo "appvm: no /home: e2fsck left errors on /dev/nbd0"
                echo "e2fsck failed ($rc)" > /run/home.failed
                return
            fi
        fi
    elif { [ "$fs" = ext4 ] && e2 mke2fs -q -t ext4 -L home /dev/nbd0 > /tmp/mke2fs.log 2>&1; } ||
        { [ "$fs" = ext2 ] && mke2fs -L home /dev/nbd0 > /tmp/mke2fs.log 2>&1; }; then
        how=created
    else
        sed 's/^/appvm: mke2fs: /' /tmp/mke2fs.log
        echo "appvm: no /home: mke2fs /dev/nbd0 failed"
        echo "mke2fs failed" > /run/home.failed
        return
    fi
    mkdir -p "$at"
    if mount -t "$fs" /dev/nbd0 "$at"; then
        read s _ < /proc/uptime; t1="${s%.*}${s#*.}"
        echo "appvm: /home on the private volume ($mib MiB, $how)"
        echo "appvm: /home is $(grep " $at " /proc/mounts | cut -d' ' -f3), mounted in $(((t1 - t0) * 10)) ms, $(df -k "$at" | tail -n 1)"
        echo "$how" > /run/home.mounted
    else
        echo "appvm: no /home: mounting /dev/nbd0 failed"
        echo "mount failed" > /run/home.failed
    fi
}
"#;

/// The part of `/init` that mounts the template's root ([`super::initramfs::init_script`]),
/// with `bulkhead.root=` on the command line: a shell function, run in the background once
/// the agent is started, that waits for the agent's `/run/root.ready` (the dm-verity device
/// over `/dev/nbd1`, set up with the manifest's root hash) or `/run/root.failed`, then
/// mounts the squashfs read-only as the lower layer of an overlay whose upper layer is a
/// tmpfs (whatever the qube changes outside its private volume is gone when it stops) at
/// `/sysroot`, and binds `/dev`, `/proc`, `/sys` and `/run` into it. Then
/// `/run/root.mounted`, on which the agent moves itself into `/sysroot`; or
/// `/run/root.failed` with the reason, and the qube stays in the initramfs.
pub const ROOT_MOUNT: &str = r#"root_mount() {
    i=0
    while [ ! -e /run/root.ready ] && [ ! -e /run/root.failed ] && [ "$i" -lt 600 ]; do
        sleep 0.1; i=$((i + 1))
    done
    if [ ! -e /run/root.ready ]; then
        why="$(cat /run/root.failed 2>/dev/null || echo 'the agent did not serve /dev/nbd1')"
        echo "appvm: no template root ($why); staying in the initramfs"
        [ -e /run/root.failed ] || echo "not served" > /run/root.failed
        return 1
    fi
    read s _ < /proc/uptime; t0="${s%.*}${s#*.}"
    dev="$(cat /run/root.ready)"
    mkdir -p /run/root/lower /run/root/mem /sysroot
    if ! mount -t squashfs -o ro "$dev" /run/root/lower; then
        echo "appvm: no template root: mounting $dev (squashfs) failed"
        echo "mount of $dev failed" > /run/root.failed
        return 1
    fi
    mount -t tmpfs -o mode=0755 root-changes /run/root/mem
    mkdir -p /run/root/mem/upper /run/root/mem/work
    if ! mount -t overlay -o lowerdir=/run/root/lower,upperdir=/run/root/mem/upper,workdir=/run/root/mem/work root /sysroot; then
        echo "appvm: no template root: the overlay on /sysroot failed"
        echo "overlay failed" > /run/root.failed
        return 1
    fi
    for d in dev proc sys run; do
        mkdir -p "/sysroot/$d" && mount -o bind "/$d" "/sysroot/$d"
    done
    mount -o bind /dev/pts /sysroot/dev/pts
    read s _ < /proc/uptime; t1="${s%.*}${s#*.}"
    echo "appvm: root is the template $(cat /sysroot/etc/bulkhead-template 2>/dev/null || echo '(unnamed)') from $dev, read-only under an in-memory overlay, in $(((t1 - t0) * 10)) ms"
    echo "$dev" > /run/root.mounted
}
"#;
