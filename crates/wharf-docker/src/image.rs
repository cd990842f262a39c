//! Images: built by the engine from a release's code, tagged per release and labelled; pushed
//! to the registry for Swarm; pruned keeping the kept releases' images, never touching an image
//! wharf did not build.

use std::path::PathBuf;

use crate::{DockerError, Engine};

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
        let _ = (req, out);
        todo!("docker helper")
    }

    /// Tags `image` for the registry (`<registry>/<image>`) and pushes it; returns the pushed
    /// reference, which every Swarm node can pull.
    pub async fn push_image(
        &self,
        image: &str,
        out: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<String, DockerError> {
        let _ = (image, out);
        todo!("docker helper")
    }

    /// Whether the engine has `image` (e.g. before `wharf deploy --image`).
    pub async fn has_image(&self, image: &str) -> Result<bool, DockerError> {
        let _ = image;
        todo!("docker helper")
    }

    /// Removes the app's images (labelled with it) whose release is not in `keep`; returns
    /// what it removed. Images in use by a container are left alone.
    pub async fn prune_images(&self, app: &str, keep: &[u32]) -> Result<Vec<String>, DockerError> {
        let _ = (app, keep);
        todo!("docker helper")
    }

    /// Removes every image of the app (app deleted with `--purge`).
    pub async fn remove_images(&self, app: &str) -> Result<(), DockerError> {
        let _ = app;
        todo!("docker helper")
    }
}
