//! `/unprotect`: stops protection and lifts every restriction the bot placed
//! in the group, so that nobody stays muted.

use gmbot_core::domain::LiftReason;

use super::caller::restrict_gate;
use super::reply::reply_text;
use crate::app::App;
use crate::flows::lift::lift_group;
use crate::handlers::HandleError;
use crate::update::Message;

/// Answers `/unprotect`.
pub(crate) async fn run(app: &App, msg: &Message) -> Result<(), HandleError> {
    let Some((group, _)) = restrict_gate(app, msg, "unprotect", "/unprotect").await? else {
        return Ok(());
    };
    let now = app.clock().unix_now();
    // Off first, so no new restriction is placed while the old ones are lifted.
    let known = app.store().unprotect(group, now).await?;
    app.engine().invalidate_group(group).await;
    let summary = lift_group(app, group, LiftReason::Unprotected).await?;
    log::info!(
        group_id = group.get(),
        lifted = summary.lifted,
        failed = summary.failed;
        "group unprotected"
    );
    let mut html = if known {
        "Protection is off: members no longer need to join a channel to write here.".to_owned()
    } else {
        "This group was not protected.".to_owned()
    };
    html.push_str(&match summary.lifted {
        0 => " Nobody was muted.".to_owned(),
        1 => " I unmuted 1 member.".to_owned(),
        n => format!(" I unmuted {n} members."),
    });
    if summary.failed > 0 {
        html.push_str(&format!(
            " {} could not be unmuted right now (Telegram refused); I will keep trying.",
            summary.failed
        ));
    }
    reply_text(app, msg, html).await
}
