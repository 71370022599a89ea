use super::*;

fn line(o: &BootOptions) -> String {
    o.args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn direct_boot_captured() {
    let media = Media::Direct {
        kernel: "/t/hv".into(),
        bundle: "/t/default.bundle".into(),
    };
    let mut o = BootOptions::new(media, 256);
    o.extra_args = vec!["-d".into(), "int".into()];
    assert_eq!(
        line(&o),
        "-machine q35 -accel tcg -cpu max -m 256 -smp 1 -device intel-iommu,intremap=on \
         -netdev user,id=uplink \
         -device virtio-net-pci,netdev=uplink,disable-legacy=on,iommu_platform=on,ats=off \
         -kernel /t/hv \
         -initrd /t/default.bundle -display none -no-reboot \
         -device isa-debug-exit,iobase=0xf4,iosize=0x04 -serial stdio -monitor none -d int"
    );
    assert!(
        o.command_line()
            .starts_with("qemu-system-x86_64 -machine q35")
    );
}

#[test]
fn iso_boot_interactive() {
    let mut o = BootOptions::new(Media::Iso("/t/x.iso".into()), 512);
    o.serial = Serial::Interactive;
    o.cpu = "EPYC".into();
    let l = line(&o);
    assert!(l.contains("-cpu EPYC -m 512 -smp 1 "), "{l}");
    o.smp = 4;
    assert!(line(&o).contains("-m 512 -smp 4 "));
    o.smp = 0;
    assert!(line(&o).contains("-smp 1 "), "at least one CPU");
    assert!(l.contains("-cdrom /t/x.iso -boot d"), "{l}");
    assert!(!l.contains("-kernel"), "{l}");
    assert!(l.ends_with("-serial mon:stdio"), "{l}");
    o.iommu = false;
    o.nic = None;
    let l = line(&o);
    assert!(!l.contains("intel-iommu") && l.contains("-nic none"), "{l}");
    o.nic = Some(Nic {
        user_options: "hostfwd=tcp::5555-:80".into(),
        model: NicModel::VirtioNet,
    });
    let l = line(&o);
    assert!(
        l.contains("-netdev user,id=uplink,hostfwd=tcp::5555-:80"),
        "{l}"
    );
    assert!(
        l.contains("-device virtio-net-pci,netdev=uplink,disable-legacy=on -"),
        "no IOMMU, no iommu_platform: {l}"
    );
    o.nic = Some(Nic {
        model: NicModel::E1000e,
        ..Nic::default()
    });
    o.iommu = true;
    let l = line(&o);
    assert!(
        l.contains(
            "-device intel-iommu,intremap=on -netdev user,id=uplink -device e1000e,netdev=uplink "
        ),
        "{l}"
    );
}

#[test]
fn screen_and_qmp_on_request_only() {
    let mut o = BootOptions::new(Media::Iso("/t/x.iso".into()), 256);
    let l = line(&o);
    assert!(!l.contains("-vga") && !l.contains("-qmp"), "{l}");
    o.display_device = Some(BOCHS_DISPLAY.into());
    o.qmp_socket = Some("/tmp/q.sock".into());
    let l = line(&o);
    assert!(
        l.contains("-vga none -device bochs-display,id=screen"),
        "{l}"
    );
    assert!(l.contains("-display none"), "{l}");
    assert!(
        l.ends_with("-qmp unix:/tmp/q.sock,server=on,wait=off"),
        "{l}"
    );
}

#[test]
fn debug_exit_codes() {
    assert_eq!(debug_exit_code(1), Some(0));
    assert_eq!(debug_exit_code(7), Some(3));
    assert_eq!(debug_exit_code(0), None);
}

#[test]
fn the_host_console_is_com2_on_a_socket() {
    let mut o = BootOptions::new(Media::Iso("/t/x.iso".into()), 256);
    assert_eq!(line(&o).matches("-serial").count(), 1);
    o.host_console = Some("/t/qvm,1.sock".into());
    let l = line(&o);
    // The first -serial is COM1 (the console), the second COM2.
    assert!(
        l.contains("-serial stdio -monitor none -serial unix:/t/qvm,,1.sock,server=on,wait=off"),
        "{l}"
    );
    o.serial = Serial::Interactive;
    let l = line(&o);
    assert!(
        l.contains("-serial mon:stdio -serial unix:/t/qvm,,1.sock,server=on,wait=off"),
        "{l}"
    );
}

#[test]
fn a_disk_is_a_modern_virtio_blk_device_behind_the_iommu() {
    let mut o = BootOptions::new(Media::Iso("/t/x.iso".into()), 256);
    assert!(!line(&o).contains("-drive"), "no disk unless asked");
    o.disk = Some("/t/a,b/disk.img".into());
    let l = line(&o);
    assert!(
        l.contains(
            "-drive file=/t/a,,b/disk.img,if=none,format=raw,id=disk0 \
             -device virtio-blk-pci,drive=disk0,disable-legacy=on,iommu_platform=on,ats=off"
        ),
        "{l}"
    );
    assert!(
        l.find("intel-iommu").unwrap() < l.find("virtio-blk-pci").unwrap(),
        "the IOMMU comes before the devices it translates"
    );
    o.iommu = false;
    let l = line(&o);
    assert!(
        l.contains("-device virtio-blk-pci,drive=disk0,disable-legacy=on -"),
        "{l}"
    );
}
