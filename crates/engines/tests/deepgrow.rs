//! The deepgrow engine's session state with the shipped model (`deepgrow_mri_brain`) on the
//! real MNI152 head: a click list that extends the last one is answered from the kept mask
//! ("session"), an identical resend gets the same answer as the first time, `reset_state`
//! and a click list that is not an extension start over ("none"); sessions do not share
//! masks; a mask sent with the request wins over the kept one; no clicks gives
//! the automatic answer (the model was trained for it); clicks outside the image, unknown
//! labels and background clicks with nothing to correct are refused naming the param.

use std::sync::Arc;

use aiaa_engines::engines::{Context, Outcome, Timings};
use aiaa_engines::{Devices, Engine, EngineError, EngineSpec, build, read_pool};
use aiaa_imaging::io::read_volume;
use aiaa_imaging::{ReadOptions, Volume};
use aiaa_testdata::{repo_root, testdata};
use serde_json::{Value, json};
use tch::Device;

fn engine() -> Box<dyn Engine> {
    let pool = read_pool(&repo_root().join("models/engine_pool.json")).unwrap();
    let entry = pool.iter().find(|e| e.name == "deepgrow_mri_brain").unwrap();
    let spec = EngineSpec::from_pool_entry(entry).unwrap();
    let devices = Devices::start(&[Device::Cpu], 2).unwrap();
    build(&spec, &devices).unwrap()
}

fn ask(
    e: &dyn Engine,
    head: &Arc<Volume>,
    session: Option<&str>,
    previous: Option<&Volume>,
    params: Value,
) -> Result<Outcome, EngineError> {
    let context = Context { session, previous };
    e.infer_in(
        Arc::clone(head),
        params.as_object().unwrap(),
        &context,
        &mut Timings::default(),
    )
}

fn mask(o: &Outcome) -> Vec<u8> {
    o.mask
        .voxels
        .to_f32_vec()
        .iter()
        .map(|v| u8::from(*v > 0.0))
        .collect()
}

#[test]
fn a_session_keeps_the_last_mask_for_clicks_that_extend_it() {
    let head = Arc::new(
        read_volume(
            &testdata().join("mni152/MNI152_T1.nii.gz"),
            &ReadOptions::default(),
        )
        .unwrap(),
    );
    let e = engine();
    let e = e.as_ref();
    assert_eq!(e.info().model_type, "deepgrow");
    let one = json!({"foreground": [[90, 108, 90]]});
    let two = json!({"foreground": [[90, 108, 90]], "background": [[90, 108, 10]]});
    let source = |o: &Outcome| o.params["previous_mask"].as_str().unwrap().to_string();

    let first = ask(e, &head, Some("s"), None, one.clone()).unwrap();
    assert_eq!(source(&first), "none");
    assert_eq!(first.mask.dims, head.dims);
    let second = ask(e, &head, Some("s"), None, two.clone()).unwrap();
    assert_eq!(source(&second), "session", "{:?}", second.params);
    // A resend of the same clicks: the mask the first answer was given, so the same answer.
    let again = ask(e, &head, Some("s"), None, two.clone()).unwrap();
    assert_eq!(source(&again), "session");
    assert_eq!(mask(&again), mask(&second));
    // Another session has nothing kept.
    assert_eq!(
        source(&ask(e, &head, Some("t"), None, two.clone()).unwrap()),
        "none"
    );
    // Not an extension (a different first click): start over.
    let moved = json!({"foreground": [[91, 108, 90]], "background": [[90, 108, 10]]});
    assert_eq!(source(&ask(e, &head, Some("s"), None, moved).unwrap()), "none");
    let mut reset = two.clone();
    reset["reset_state"] = json!(true);
    assert_eq!(source(&ask(e, &head, Some("t"), None, reset).unwrap()), "none");
    // Without a session nothing is kept; a mask in the request wins.
    assert_eq!(source(&ask(e, &head, None, None, two.clone()).unwrap()), "none");
    let given = ask(e, &head, Some("s"), Some(&first.mask), two.clone()).unwrap();
    assert_eq!(source(&given), "request");
    // The kept answer is the one the mask came from: the second answer refines the first.
    assert_eq!(mask(&given), mask(&second), "the request's mask is the one kept");

    // No clicks: the automatic answer, the brain (the model trained on this head: this
    // checks the mode works, not how well it generalises).
    let auto = ask(e, &head, None, None, json!({})).unwrap();
    let brain = read_volume(
        &testdata().join("mni152/MNI152_mask.nii.gz"),
        &ReadOptions::default(),
    )
    .unwrap();
    let truth: Vec<u8> = brain
        .voxels
        .to_f32_vec()
        .iter()
        .map(|v| u8::from(*v > 0.0))
        .collect();
    let auto = mask(&auto);
    let both = auto
        .iter()
        .zip(&truth)
        .filter(|(a, b)| **a == 1 && **b == 1)
        .count();
    let sum = auto.iter().chain(&truth).filter(|v| **v == 1).count();
    let dice = 2.0 * both as f64 / sum as f64;
    eprintln!("automatic answer on MNI152: Dice {dice:.4}");
    assert!(dice >= 0.9, "automatic answer Dice {dice}");

    // Refusals name the param.
    for (params, needle) in [
        (json!({"foreground": [[500, 1, 1]]}), "params.foreground"),
        (json!({"background": [[1, 1, 1]]}), "params.background"),
        (
            json!({"foreground": [[1, 1, 1]], "label": "liver"}),
            "params.label",
        ),
    ] {
        let err = ask(e, &head, Some("u"), None, params).err().unwrap().to_string();
        assert!(err.contains(needle), "{err}");
    }
}
