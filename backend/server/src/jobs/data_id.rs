//! The data folder's identity: a random id written once into `<data-dir>/data-id` and into the job
//! store, checked at every start, so that a lost or replaced `cemiface.db` is never paired with the
//! job folders of another store (which would reuse job ids and resume other jobs' checkpoints).

use std::path::Path;

use anyhow::bail;

use super::store::Store;

/// Name of the id file in the data folder.
pub const FILE: &str = "data-id";

/// Checks that the store and the data folder belong together, writing the id where it is missing
/// and nothing is at risk. Returns the id.
pub fn check(data_dir: &Path, db_path: &Path, store: &Store) -> anyhow::Result<String> {
    let file = data_dir.join(FILE);
    let in_file = match std::fs::read_to_string(&file) {
        Ok(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!("{}: {e}", file.display()),
    };
    let in_store = store.data_id()?;
    let jobs = data_dir.join("jobs");
    let has_jobs = std::fs::read_dir(&jobs)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    match (in_file, in_store) {
        (Some(f), Some(s)) if f == s => Ok(f),
        (Some(f), Some(s)) => bail!(
            "the job store {} belongs to data folder {s}, but {} says this folder is {f}: they come from \
             different data folders. Put back this folder's own cemiface.db, or start the server with the \
             --data-dir the store came from.",
            db_path.display(),
            file.display()
        ),
        (_, None) if has_jobs => bail!(
            "{} holds job folders but the job store {} is new or empty: the store was lost or replaced. \
             Restore cemiface.db from a backup, or move {} away to start afresh (job ids would otherwise \
             be reused and old checkpoints resumed by new jobs).",
            jobs.display(),
            db_path.display(),
            jobs.display()
        ),
        (Some(f), None) => {
            store.set_data_id(&f)?;
            Ok(f)
        }
        (None, Some(s)) => {
            write(&file, &s)?;
            Ok(s)
        }
        (None, None) => {
            let id = crate::web::auth::hex(&crate::web::auth::random_bytes(16));
            store.set_data_id(&id)?;
            write(&file, &id)?;
            Ok(id)
        }
    }
}

fn write(file: &Path, id: &str) -> anyhow::Result<()> {
    std::fs::write(file, format!("{id}\n")).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("cemiface-dataid-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_folder_and_its_store_pair_once_and_a_lost_store_is_refused() {
        let d = fresh("pair");
        let db = d.join("cemiface.db");
        let id = check(&d, &db, &Store::open(&db).unwrap()).unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(
            check(&d, &db, &Store::open(&db).unwrap()).unwrap(),
            id,
            "stable across starts"
        );
        // The id file lost: rewritten from the store.
        std::fs::remove_file(d.join(FILE)).unwrap();
        assert_eq!(check(&d, &db, &Store::open(&db).unwrap()).unwrap(), id);
        // A job folder exists and the store is replaced by an empty file: refused, naming both paths.
        std::fs::create_dir_all(d.join("jobs/1")).unwrap();
        std::fs::remove_file(&db).unwrap();
        std::fs::write(&db, b"").unwrap();
        let e = check(&d, &db, &Store::open(&db).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("holds job folders") && e.contains("cemiface.db") && e.contains("jobs"),
            "{e}"
        );
        // Another folder's store: refused.
        let other = fresh("other");
        let odb = other.join("cemiface.db");
        check(&other, &odb, &Store::open(&odb).unwrap()).unwrap();
        std::fs::copy(&odb, &db).unwrap();
        let e = check(&d, &db, &Store::open(&db).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("different data folders"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::remove_dir_all(&other).unwrap();
    }
}
