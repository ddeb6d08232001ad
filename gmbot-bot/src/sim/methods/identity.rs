//! `getMe`.

use serde_json::Value;

use super::super::api_error::ApiError;
use super::super::render;
use super::super::world::World;

pub(super) fn get_me(world: &World) -> Result<Value, ApiError> {
    super::to_json(&render::me(&world.bot))
}
