//! The EC2-style plain-text metadata tree (AWS, Alibaba, Exoscale, OpenStack's EC2 view):
//! one value per leaf, directory listings one entry per line with `/` after subdirectories.

use super::Ctx;
use crate::http::Request;
use crate::Result;

/// A tree rooted at `base` (an IP-literal URL ending in `/`), with an optional token header.
pub(crate) struct Tree<'a, 'c> {
    pub ctx: &'a Ctx<'c>,
    pub base: String,
    pub token: Option<(&'static str, String)>,
}

impl Tree<'_, '_> {
    pub fn request(&self, path: &str) -> Result<Request> {
        let req = Request::get(self.ctx.url(&format!("{}{path}", self.base))?);
        match &self.token {
            Some((name, value)) => req.secret_header(name, value),
            None => Ok(req),
        }
    }

    /// A leaf's trimmed text; `None` when absent or blank.
    pub async fn leaf(&self, path: &str) -> Result<Option<String>> {
        self.ctx.text(&self.request(path)?).await
    }

    /// A leaf that must be there (the instance id).
    pub async fn required_leaf(&self, path: &str) -> Result<String> {
        self.leaf(path)
            .await?
            .ok_or_else(|| self.ctx.invalid(format!("{}{path} is missing", self.base)))
    }

    pub async fn list(&self, path: &str) -> Result<Vec<String>> {
        Ok(match self.ctx.fetch(&self.request(path)?).await? {
            Some(body) => parse_listing(&body.bytes),
            None => Vec::new(),
        })
    }

    /// `public-keys/` lists `0=name` (AWS) or `id/` (Alibaba); each key is at
    /// `public-keys/<index>/openssh-key`.
    pub async fn public_keys(&self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        for entry in self.list("public-keys/").await? {
            let index = entry.split('=').next().unwrap_or("").trim_end_matches('/');
            if index.is_empty() || index.contains(['/', '?', '#']) || index == ".." {
                continue;
            }
            if let Some(text) = self
                .leaf(&format!("public-keys/{index}/openssh-key"))
                .await?
            {
                keys.extend(text.lines().map(str::to_owned));
            }
        }
        Ok(keys)
    }
}

/// The entries of a listing, blank lines dropped. Invalid UTF-8 is replaced, never fatal.
pub fn parse_listing(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A zone name minus its last character (`eu-central-1a` → `eu-central-1`).
pub fn region_of_zone(zone: &str) -> Option<String> {
    let mut chars = zone.chars();
    chars.next_back().filter(char::is_ascii_alphabetic)?;
    Some(chars.as_str().to_owned()).filter(|s| !s.is_empty())
}
