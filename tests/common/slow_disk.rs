//! A slow disk for etcd: an ext4 file system on a loop device, and a blkio cgroup (v1)
//! that throttles a process's writes to it. Both are undone on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An ext4 file system on a loop device, mounted; unmounted and detached on drop.
pub struct LoopDisk {
    pub device: String,
    pub mount: PathBuf,
}

impl LoopDisk {
    pub fn new(dir: &Path) -> LoopDisk {
        std::fs::create_dir_all(dir).unwrap();
        let image = dir.join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        let device = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image));
        let disk = LoopDisk {
            device,
            mount: dir.join("disk"),
        };
        run(Command::new("mkfs.ext4").args(["-q", &disk.device]));
        std::fs::create_dir_all(&disk.mount).unwrap();
        run(Command::new("mount").arg(&disk.device).arg(&disk.mount));
        disk
    }

    /// `MAJOR:MINOR` of the device.
    pub fn numbers(&self) -> String {
        let name = self.device.trim_start_matches("/dev/");
        std::fs::read_to_string(format!("/sys/block/{name}/dev"))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// A blkio cgroup (v1) of its own; processes are moved back out and it is removed on
/// drop.
pub struct Throttle {
    dir: PathBuf,
    device: String,
}

impl Throttle {
    pub fn new(name: &str, device: String) -> Throttle {
        let dir = Path::new("/sys/fs/cgroup/blkio").join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        Throttle { dir, device }
    }

    pub fn write_iops(&self, iops: u32) {
        std::fs::write(
            self.dir.join("blkio.throttle.write_iops_device"),
            format!("{} {iops}", self.device),
        )
        .unwrap();
    }

    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write("/sys/fs/cgroup/blkio/cgroup.procs", pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
