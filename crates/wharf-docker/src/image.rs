//! Images: built by the engine from a release's code, tagged per release and labelled; pushed
//! to the registry for Swarm; pruned keeping the kept releases' images, never touching an image
//! wharf did not build.
//!
//! The build context is sent as a tar streamed from the release's folder (bounded memory),
//! minus what `.dockerignore` excludes; symbolic links are sent as links, never followed, so a
//! link in an app's code cannot bring a file of the server into the image.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use bollard::query_parameters::{
    BuildImageOptions, ImportImageOptions, ListContainersOptions, ListImagesOptions,
    PushImageOptions, RemoveImageOptions, TagImageOptions,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::{DockerError, Engine, labels};

/// One image build.
pub struct BuildRequest {
    pub app: String,
    pub release: u32,
    /// The build context: the release's folder.
    pub context: PathBuf,
    /// The Dockerfile, relative to `context` (`Dockerfile` unless `wharf.toml` says otherwise).
    pub dockerfile: String,
}

/// The tag of a release's image: `wharf/<app>:<release>`.
pub fn tag(app: &str, release: u32) -> String {
    format!("wharf/{app}:{release}")
}

impl Engine {
    /// Builds the image, streaming the engine's output line by line to `out`; returns its tag
    /// ([`tag`]). A failed build's message names the step that failed.
    pub async fn build_image(
        &self,
        req: &BuildRequest,
        out: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<String, DockerError> {
        let mut attempt = 1;
        loop {
            match self.build_once(req, out).await {
                // The engine picked a cached layer that another build's clean-up (ours pruning
                // another app, or anyone's `docker image rm`) removed before the step ran: the
                // Dockerfile is fine, and building again takes the layers that are there now.
                Err(DockerError::Other(msg)) if attempt < 3 && is_vanished_cache_layer(&msg) => {
                    out("a cached layer was removed while the build used it; building again");
                    attempt += 1;
                }
                res => return res,
            }
        }
    }

    async fn build_once(
        &self,
        req: &BuildRequest,
        out: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<String, DockerError> {
        let dockerfile = check_dockerfile(&req.context, &req.dockerfile)?;
        let image = tag(&req.app, req.release);
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
        let context = req.context.clone();
        let tar = tokio::task::spawn_blocking(move || {
            let mut sink = ChannelWriter { tx: tx.clone() };
            let res = write_context(&context, &dockerfile, &mut sink);
            if let Err(e) = &res {
                // Fails the upload, so the engine stops too.
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
            res
        });
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        let options = BuildImageOptions {
            dockerfile: req.dockerfile.clone(),
            t: Some(image.clone()),
            rm: true,
            forcerm: true,
            labels: Some({
                let mut l = HashMap::from([
                    (labels::APP.to_string(), req.app.clone()),
                    (labels::RELEASE.to_string(), req.release.to_string()),
                ]);
                self.own(&mut l);
                l
            }),
            ..Default::default()
        };
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_try_stream(body)));
        // The last "Step N/M : …" line, so a failure names the step.
        let mut step = None::<String>;
        let mut failure = None::<String>;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    for text in [info.stream, info.status].into_iter().flatten() {
                        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                            if line.starts_with("Step ") {
                                step = Some(line.to_string());
                            }
                            out(line);
                        }
                    }
                }
                Err(e) => {
                    failure = Some(engine_message(&e));
                    break;
                }
            }
        }
        drop(stream);
        let tar = tar
            .await
            .map_err(|e| DockerError::Other(format!("the build context task failed: {e}")))?;
        // The engine's own reason first: when it stops a build (no space left, say), the
        // context upload breaks too, and that says less.
        if let Some(msg) = failure {
            let at = step.map(|s| format!(" at {s}")).unwrap_or_default();
            return Err(DockerError::Other(format!(
                "the image build of {image} failed{at}: {msg}"
            )));
        }
        if let Err(e) = tar {
            return Err(DockerError::Other(format!(
                "cannot send the build context {}: {e}",
                req.context.display()
            )));
        }
        Ok(image)
    }

    /// Tags `image` for the registry (`<registry>/<image>`) and pushes it; returns the pushed
    /// reference, which every Swarm node can pull.
    pub async fn push_image(
        &self,
        image: &str,
        out: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<String, DockerError> {
        let Some(registry) = self.registry.as_deref() else {
            return Err(DockerError::Other(format!(
                "cannot push {image}: no registry is set (start the server with --registry \
                 HOST[:PORT], a registry every node can pull from)"
            )));
        };
        let (repo, version) = split_tag(image);
        let repo = format!("{registry}/{repo}");
        let reference = format!("{repo}:{version}");
        self.docker
            .tag_image(
                image,
                Some(TagImageOptions {
                    repo: Some(repo.clone()),
                    tag: Some(version.to_string()),
                }),
            )
            .await
            .map_err(|source| DockerError::Api {
                context: format!("cannot tag {image} as {reference}"),
                source,
            })?;
        let mut stream = self.docker.push_image(
            &repo,
            Some(PushImageOptions {
                tag: Some(version.to_string()),
                platform: None,
            }),
            None,
        );
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    // Progress updates ("Pushing [==>  ]") would flood the output.
                    if info.progress_detail.is_some_and(|p| p.current.is_some()) {
                        continue;
                    }
                    if let Some(status) = info.status.as_deref().map(str::trim)
                        && !status.is_empty()
                    {
                        out(status);
                    }
                }
                Err(e) => {
                    return Err(DockerError::Other(format!(
                        "cannot push {reference}: {}",
                        engine_message(&e)
                    )));
                }
            }
        }
        Ok(reference)
    }

    /// Whether the engine has `image` (e.g. before `wharf deploy --image`).
    pub async fn has_image(&self, image: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(source) => Err(DockerError::Api {
                context: format!("cannot look up the image {image}"),
                source,
            }),
        }
    }

    /// The image as a `docker save` tar (its layers, config and tag), streamed as the engine
    /// writes it: sent to a node's engine, which [`Engine::load_image`]s it.
    pub fn save_image(
        &self,
        image: &str,
    ) -> impl Stream<Item = Result<Bytes, DockerError>> + Send + use<> {
        let context = format!(
            "cannot save the image {image} from the engine at {}",
            self.host
        );
        self.docker.export_image(image).map(move |chunk| {
            chunk.map_err(|e| DockerError::Other(format!("{context}: {}", engine_message(&e))))
        })
    }

    /// Loads a `docker save` tar (as [`Engine::save_image`] streams it) into this engine, and
    /// returns what the engine says it loaded (`wharf/blog:3`, or an image id). A body that
    /// fails, or an archive the engine refuses, fails with the engine's own words. Loading
    /// adds images (tagging them, the tag moved off any image that held it) and removes
    /// nothing; the image keeps the labels it was built with.
    pub async fn load_image(
        &self,
        body: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    ) -> Result<Vec<String>, DockerError> {
        let options = ImportImageOptions {
            quiet: true,
            platform: None,
        };
        let mut stream = self
            .docker
            .import_image(options, bollard::body_try_stream(body), None);
        let mut loaded = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    for line in [info.stream, info.status].into_iter().flatten() {
                        let line = line.trim();
                        if let Some(name) = line
                            .strip_prefix("Loaded image: ")
                            .or_else(|| line.strip_prefix("Loaded image ID: "))
                        {
                            loaded.push(name.trim().to_string());
                        }
                    }
                }
                Err(e) => {
                    return Err(DockerError::Other(format!(
                        "the engine at {} cannot load the image: {}",
                        self.host,
                        engine_message(&e)
                    )));
                }
            }
        }
        if loaded.is_empty() {
            return Err(DockerError::Other(format!(
                "the engine at {} loaded no image: the archive held none",
                self.host
            )));
        }
        Ok(loaded)
    }

    /// Removes the app's images (labelled with it) whose release is not in `keep`; returns
    /// what it removed. Images in use by a container are left alone.
    pub async fn prune_images(&self, app: &str, keep: &[u32]) -> Result<Vec<String>, DockerError> {
        let mut mine = vec![format!("{}={app}", labels::APP)];
        mine.extend(self.owner_filter());
        let filters = HashMap::from([("label".to_string(), mine)]);
        let images = self
            .docker
            .list_images(Some(ListImagesOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|source| DockerError::Api {
                context: format!("cannot list the images of {app}"),
                source,
            })?;
        let in_use = self.images_in_use().await?;
        let mut removed = Vec::new();
        for image in images {
            let Some(release) = image
                .labels
                .get(labels::RELEASE)
                .and_then(|r| r.parse::<u32>().ok())
            else {
                continue;
            };
            if keep.contains(&release) || in_use.contains(&image.id) {
                continue;
            }
            // Only the tags wharf gave (`wharf/<app>:<release>`, and its registry copy): an
            // image built FROM one of ours carries our labels but is someone else's.
            let ours = tag(app, release);
            let registry_copy = format!("/{ours}");
            for t in image
                .repo_tags
                .iter()
                .filter(|t| **t == ours || t.ends_with(&registry_copy))
            {
                match self
                    .docker
                    .remove_image(
                        t,
                        Some(RemoveImageOptions {
                            force: false,
                            noprune: false,
                            platforms: None,
                        }),
                        None,
                    )
                    .await
                {
                    Ok(_) => removed.push(t.clone()),
                    // In use (e.g. a container created meanwhile) or already gone: left alone.
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404 | 409,
                        ..
                    }) => {}
                    Err(source) => {
                        return Err(DockerError::Api {
                            context: format!("cannot remove the image {t}"),
                            source,
                        });
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Removes every image of the app (app deleted with `--purge`).
    pub async fn remove_images(&self, app: &str) -> Result<(), DockerError> {
        self.prune_images(app, &[]).await.map(drop)
    }

    /// Ids of the images any container (running or not) was created from.
    async fn images_in_use(&self) -> Result<HashSet<String>, DockerError> {
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(|source| DockerError::Api {
                context: "cannot list containers".into(),
                source,
            })?;
        Ok(containers.into_iter().filter_map(|c| c.image_id).collect())
    }
}

/// The legacy builder's message when a cache hit's image is gone by the time the step uses it;
/// it names the layer by id, which a Dockerfile's own `FROM` never does.
fn is_vanished_cache_layer(msg: &str) -> bool {
    msg.contains("unable to find image \"sha256:")
}

/// `repo:tag` → (`repo`, `tag`); `latest` when there is no tag (a `:` in a registry's
/// `host:port` is not a tag).
fn split_tag(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

/// The engine's own words for a failure.
fn engine_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerStreamError { error } => error.trim().to_string(),
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            message.trim().to_string()
        }
        other => other.to_string(),
    }
}

/// The Dockerfile's path inside the context, checked: relative, inside, present.
fn check_dockerfile(context: &Path, dockerfile: &str) -> Result<PathBuf, DockerError> {
    let rel = Path::new(dockerfile);
    if dockerfile.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(DockerError::Other(format!(
            "the Dockerfile path \"{dockerfile}\" must be a relative path inside the app's code \
             (e.g. \"Dockerfile\" or \"docker/Dockerfile\")"
        )));
    }
    if !context.join(rel).is_file() {
        return Err(DockerError::Other(format!(
            "there is no {dockerfile} in {}: add one, or name the right file in wharf.toml",
            context.display()
        )));
    }
    Ok(rel.to_path_buf())
}

/// The bytes of the tar, sent to the engine as they are written.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other("the engine stopped reading the build context"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes the build context as a tar: every file under `context` except what `.dockerignore`
/// excludes (the Dockerfile and `.dockerignore` are always sent, as the engine needs them).
fn write_context(context: &Path, dockerfile: &Path, sink: impl Write) -> std::io::Result<()> {
    let ignore = dockerignore(context)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(64 << 10, sink));
    // Owner root, no times: what a plain `docker build` sends, and a stable build cache.
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    let always = [dockerfile.to_path_buf(), PathBuf::from(".dockerignore")];
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        let mut entries =
            std::fs::read_dir(context.join(&dir))?.collect::<std::io::Result<Vec<_>>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let rel = dir.join(entry.file_name());
            let kind = entry.file_type()?;
            if !always.contains(&rel) && ignore.matched(&rel, kind.is_dir()).is_ignore() {
                continue;
            }
            tar.append_path_with_name(entry.path(), &rel)?;
            if kind.is_dir() {
                pending.push(rel);
            }
        }
    }
    tar.into_inner()?.flush()
}

/// `.dockerignore`'s patterns. Its patterns are relative to the context's root, so each is
/// anchored there (`*.log` excludes `./x.log`, not `./sub/x.log`; `**/*.log` excludes both).
fn dockerignore(context: &Path) -> std::io::Result<Gitignore> {
    let mut builder = GitignoreBuilder::new(context);
    let text = match std::fs::read_to_string(context.join(".dockerignore")) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (neg, pattern) = match line.strip_prefix('!') {
            Some(p) => ("!", p.trim()),
            None => ("", line),
        };
        let pattern = pattern.trim_start_matches("./").trim_start_matches('/');
        builder
            .add_line(None, &format!("{neg}/{pattern}"))
            .map_err(|e| {
                std::io::Error::other(format!("bad .dockerignore pattern \"{line}\": {e}"))
            })?;
    }
    builder
        .build()
        .map_err(|e| std::io::Error::other(format!("bad .dockerignore: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_at_the_version() {
        assert_eq!(split_tag("wharf/blog:3"), ("wharf/blog", "3"));
        assert_eq!(
            split_tag("host:5000/wharf/blog"),
            ("host:5000/wharf/blog", "latest")
        );
        assert_eq!(split_tag("blog"), ("blog", "latest"));
    }

    #[test]
    fn a_vanished_cache_layer_is_told_from_a_missing_base_image() {
        // As a build printed it when a concurrent clean-up removed the layer it had picked.
        assert!(is_vanished_cache_layer(
            "unable to find image \"sha256:62fa3bb7fd0fdf93f0edce0ba989c4312428d9a9a694aa1565c354902cc578a7\""
        ));
        assert!(!is_vanished_cache_layer(
            "pull access denied for nosuch/base, repository does not exist"
        ));
        assert!(!is_vanished_cache_layer(
            "unable to find image \"nosuch/base:1\""
        ));
    }

    #[test]
    fn context_honours_dockerignore_and_keeps_links_as_links() {
        let dir = std::env::temp_dir().join(format!("wharf-ctx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src/logs")).unwrap();
        std::fs::create_dir_all(dir.join("node_modules/x")).unwrap();
        for f in [
            "Dockerfile",
            "app.py",
            "debug.log",
            "src/main.py",
            "src/logs/a.log",
            "src/keep.log",
            "node_modules/x/index.js",
        ] {
            std::fs::write(dir.join(f), f).unwrap();
        }
        std::fs::write(
            dir.join(".dockerignore"),
            "# comment\nnode_modules\n*.log\nsrc/logs\n.dockerignore\nDockerfile\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd")).unwrap();
        let mut buf = Vec::new();
        write_context(&dir, Path::new("Dockerfile"), &mut buf).unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(&buf[..]).entries().unwrap() {
            let e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            if name == "passwd" {
                assert_eq!(e.header().entry_type(), tar::EntryType::Symlink);
            }
            names.push(name);
        }
        names.sort();
        assert_eq!(
            names,
            [
                ".dockerignore",
                "Dockerfile",
                "app.py",
                "passwd",
                "src",
                "src/keep.log",
                "src/main.py"
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dockerfile_must_be_inside_and_present() {
        let dir = std::env::temp_dir();
        let err = check_dockerfile(&dir, "../Dockerfile")
            .unwrap_err()
            .to_string();
        assert!(err.contains("relative path inside"), "{err}");
        let err = check_dockerfile(&dir, "no-such-Dockerfile-here")
            .unwrap_err()
            .to_string();
        assert!(err.contains("there is no no-such-Dockerfile-here"), "{err}");
    }
}
