//! The images of a `batch` run: image files, directories and list files, in the order given,
//! each image once; and the key that says when two paths are the same image.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// File extensions taken as images (from a directory, or a file named on the command line).
const IMAGE_EXTENSIONS: [&str; 9] = [
    "jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff", "jfif",
];

/// Whether `path` has an image file extension (any case).
fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The identity of an image path: the canonical path (symlinks, `.` and `..` resolved) when
/// the file exists, else the absolute path. `./dir/a.png`, `dir/a.png` and a symlink to it
/// have the same key; relative paths are taken from the current directory.
pub(crate) fn image_key(path: &Path) -> String {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The images of `inputs`, in order: an image file (by extension) is itself, a directory
/// gives its images (sorted, not recursive), any other file is a list of image paths, one a
/// line (`#` comments and blank lines skipped; relative paths are relative to the list file).
/// An image named twice (by any path) is kept once, at its first place. A directory without
/// images, a list without entries, or no images at all is an error.
pub(crate) fn collect_images(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    let mut seen = HashSet::new();
    for input in inputs {
        let found = if input.is_dir() {
            directory_images(input)?
        } else if has_image_extension(input) {
            if !input.is_file() {
                bail!("cannot open {}: no such image file", input.display());
            }
            vec![input.clone()]
        } else {
            listed_images(input)?
        };
        for image in found {
            if seen.insert(image_key(&image)) {
                images.push(image);
            } else {
                tracing::info!("{} is named twice: captioned once", image.display());
            }
        }
    }
    if images.is_empty() {
        bail!("no images to caption");
    }
    Ok(images)
}

/// The image files of directory `dir`, sorted by name; none is an error.
fn directory_images(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && has_image_extension(p))
        .collect();
    if paths.is_empty() {
        bail!(
            "no images found in {} (looked for {} files)",
            dir.display(),
            IMAGE_EXTENSIONS.join(", ")
        );
    }
    paths.sort();
    Ok(paths)
}

/// The image paths listed in the text file `list`; none is an error.
fn listed_images(list: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let file = File::open(list).with_context(|| format!("cannot open {}", list.display()))?;
    let base = list.parent().unwrap_or(Path::new("."));
    let mut paths = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| {
            format!(
                "{}:{}: not UTF-8 text (a list file names one image a line; images need one \
                 of the extensions {})",
                list.display(),
                n + 1,
                IMAGE_EXTENSIONS.join(", ")
            )
        })?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let p = Path::new(line);
        paths.push(if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        });
    }
    if paths.is_empty() {
        bail!("no images listed in {}", list.display());
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_directories_and_lists_mix_and_each_image_counts_once() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let photos = dir.path().join("photos");
        std::fs::create_dir(&photos)?;
        for name in ["b.png", "a.JPG", "notes.txt"] {
            std::fs::write(photos.join(name), b"x")?;
        }
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "# mine\n\nphotos/a.JPG\n/elsewhere/c.png\n")?;
        let got = collect_images(&[photos.join("b.png"), photos.clone(), list])?;
        assert_eq!(
            got,
            [
                photos.join("b.png"),
                photos.join("a.JPG"),
                PathBuf::from("/elsewhere/c.png")
            ]
        );
        // `photos/./a.JPG` and `photos/a.JPG` are one image.
        assert_eq!(
            image_key(&photos.join(".").join("a.JPG")),
            image_key(&photos.join("a.JPG"))
        );
        Ok(())
    }

    #[test]
    fn empty_inputs_are_errors_that_name_them() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let err = collect_images(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(err.to_string().contains("no images found in"), "{err}");
        let list = dir.path().join("empty.txt");
        std::fs::write(&list, "# nothing\n")?;
        let err = collect_images(&[list]).unwrap_err();
        assert!(err.to_string().contains("no images listed in"), "{err}");
        let err = collect_images(&[dir.path().join("gone.png")]).unwrap_err();
        assert!(err.to_string().contains("gone.png"), "{err}");
        Ok(())
    }
}
