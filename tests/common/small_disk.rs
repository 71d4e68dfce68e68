//! A small file system to fill: a tmpfs in a private mount namespace, held open by a
//! process of its own. Nothing is mounted on the machine, so a test that dies, however
//! it dies, leaves no mount behind; the tmpfs goes with the last process inside.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct SmallDisk {
    /// Sleeps in the namespace (for at most ten minutes, should it outlive the test).
    holder: Child,
    /// Where the tmpfs is mounted, as the processes in its namespace see it: outside,
    /// an empty directory.
    pub dir: PathBuf,
}

impl SmallDisk {
    /// A tmpfs of `size` bytes (a multiple of 4096) on `dir`, an empty directory.
    pub fn mount(dir: &Path, size: u64) -> SmallDisk {
        let script = "mount -t tmpfs -o size=\"$1\",mode=0700 tmpfs \"$2\" && echo mounted \
                      && exec sleep 600";
        let mut holder = super::sh_in_private_mount_ns(script)
            .arg(size.to_string())
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting unshare");
        let mut line = String::new();
        let stdout = holder.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        if line.trim() != "mounted" {
            let status = holder.wait().unwrap();
            panic!(
                "mounting a tmpfs on {} in a new mount namespace failed ({status})",
                dir.display()
            );
        }
        SmallDisk {
            holder,
            dir: dir.to_path_buf(),
        }
    }

    /// `program`, run inside the namespace by `nsenter`, which execs it: the process
    /// started is `program`'s.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id()))
            .arg("--")
            .arg(program);
        command
    }

    /// Where a file on the tmpfs is seen from outside the namespace, for reading.
    pub fn outside(&self, name: &str) -> PathBuf {
        let inside = self.dir.join(name);
        Path::new(&format!("/proc/{}/root", self.holder.id()))
            .join(inside.strip_prefix("/").unwrap_or(&inside))
    }

    /// The names of the files on it, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.outside(""))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
