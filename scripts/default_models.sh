#!/usr/bin/env bash
# Rebuild the bundled default models (pipelines/assets/codec and pipelines/assets/lm) from nothing but the
# project's own data recipes, on a CPU, and measure them. Every stage resumes: rerun the script after an
# interruption and it continues where it stopped. The model card (pipelines/assets/README.md) lists what
# each stage produced and the figures of the evaluation stage.
#
#   scripts/default_models.sh                # every stage in order, into runs/default (RUNS=... to move it)
#   scripts/default_models.sh eval           # one stage, or several: scripts/default_models.sh "lm lm-more"
#   RUNS=/tmp/dry RVQ=echo PYTHON=echo scripts/default_models.sh decoder-speech   # print a stage's commands only
#
# The stages, with their wall time on the 2-core CPU that trained the bundled models (the model card's figures; the
# LM stages there ran as 2 processes x 1 thread under torchrun, where this script runs one process):
#   data             speech and music, 4 h each (4 and 5 min); the extra and extra2 voice sets (about 1 min each)
#   codec            the codec, 4000 steps (65 min)
#   decoder          its decoder with EnCodec's MS-STFT discriminator, codes fixed, 2000 steps (73 min)
#   decoder-periods  then with HiFi-GAN's multi-period discriminator as well, 2000 steps (91 min)
#   pitch-head       an f0/voicing head fitted on the frozen decoder, 2500 steps (15 min)
#   decoder-pitch    the pitch-phase decoder, 1400 steps (about 95 min)
#   decoder-edge     the bundled codec: those weights read with the source's phase at voicing edges (no training)
#   decoder-speech   the codec's speech decoder: 22 runs of 600-1000 steps on speech and 3 averages (24-31 min a
#                    run, about 9.5 h in all)
#   tokenize         the data as codes of the codec (4 min for speech, 3 for music)
#   lm               the LMs' first stage, 900 steps (40 min)
#   lm-more          900 more (35 min)
#   lm-more2         2000 more, speech cropped from its start (58 min)
#   lm-phonemes      2600 more with a phoneme track for speech (106 min)
#   lm-aligned       the speech LM: 1800 more with force-aligned phonemes (7 min aligning, 52 min training)
#   lm-aligned2      its last stage: 1000 more on speech alone (6 min aligning, 22 min training)
#   lm-music         the music LM, from lm-phonemes: 1000 steps on music alone (53 min)
#   lm-beats         1500 more with a beat track (36 min)
#   lm-beats2        its last stage: 1500 more at a lower peak LR (33 min)
#   install          the codec, its speech decoder and both LMs into pipelines/assets, in float16
#   decoder-speech-real  the installed speech decoder on real speech too: 600 steps on Asterisk's prompts (train
#                    split) pooled with 2 h of synthetic speech, codes fixed, resumed to 1200 and 1800 steps, and
#                    the mean of the two decoders installed in its place (data about 10 min if missing, training
#                    29 + 27 + 27 min)
#   decoder-choice   which decoder `rvqaudio decode` uses for given codes (speech decoder or the codec's own), fitted
#                    on synthetic (2 h speech, 1 h music) and real recordings (Asterisk's prompts; the game and
#                    demo music packages): the datasets (about 12 min), the fit (about 10 min)
#   eval             the codec on speech and music (5 and 6 min), TTS (17 min), music (3 min, and 3-5 min for the
#                    instrument classifier it needs)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/default}
RVQ=${RVQ:-.venv/bin/rvqaudio}
PYTHON=${PYTHON:-.venv/bin/python}
HOURS=${HOURS:-4}                    # hours of speech and of music
CODEC_CONFIG=${CODEC_CONFIG:-configs/codec_spectral_small.json}
CODEC_STEPS=${CODEC_STEPS:-4000}     # the config's max_steps; its LR cools down over the last 1000
DECODER_STEPS=${DECODER_STEPS:-2000} # decoder fine-tuning with the adversarial stage, codes fixed
DECODER2_STEPS=${DECODER2_STEPS:-2000} # and again with the multi-period discriminator added
PITCH_HEAD_STEPS=${PITCH_HEAD_STEPS:-2500} # an f0/voicing head fitted on the frozen decoder (batch 16)
PITCH_STEPS=${PITCH_STEPS:-"700 1400"} # the pitch-phase decoder fine-tune: 700 steps, then resumed to 1400 (its LR
                                     # schedule re-warms at 700, as in the shipped run; exact resume makes it the same)
SPEECH_DECODER_STEPS=${SPEECH_DECODER_STEPS:-1000} # the speech decoder: on speech alone, with learned edge offsets
SPEECH_DECODER2_STEPS=${SPEECH_DECODER2_STEPS:-1000} # then without them
SPEECH_DECODER3_STEPS=${SPEECH_DECODER3_STEPS:-1000} # then with the phase-derivative loss
SPEECH_DECODER4_STEPS=${SPEECH_DECODER4_STEPS:-1000} # then with it and learned edge offsets again
SPEECH_DECODER5_STEPS=${SPEECH_DECODER5_STEPS:-1000} # then with learned residuals over the source in voiced frames,
                                     # seven times (seven runs, each re-warmed from the one before): four on the
                                     # same batches (seed 0), then three on new ones (seeds 1-3) with the extra
                                     # voice set pooled in; then three more from the seventh (two re-warmed runs,
                                     # seeds 4-5, and the seventh resumed), their mean; then four runs from
                                     # that mean with a wider voiced residual (seeds 7-10), their mean
SPEECH_DECODER6_STEPS=${SPEECH_DECODER6_STEPS:-600} # then four runs from that mean with PESQ's loudness
                                     # disturbance as a loss (seeds 7-10); their mean is the speech decoder
SPEECH_REAL_STEPS=${SPEECH_REAL_STEPS:-"600 1200 1800"} # the installed speech decoder on real and synthetic speech:
                                     # 600 steps, resumed to 1200, then to 1800
EXTRA_HOURS=${EXTRA_HOURS:-3}        # hours of speech by the extra voice set (the speech decoder's last runs)
EXTRA2_HOURS=${EXTRA2_HOURS:-1}      # hours by the extra2 voice set (three more speakers, some of those runs)
LM_STEPS=${LM_STEPS:-900}           # of configs/lm_train_base.json
LM_MORE_STEPS=${LM_MORE_STEPS:-900} # continued training, configs/lm_train_base_continue.json
LM_MORE2_STEPS=${LM_MORE2_STEPS:-2000} # and again, speech cropped from its start: configs/lm_train_base_continue2.json
LM_PHONEME_STEPS=${LM_PHONEME_STEPS:-2600} # with an aligned phoneme track for speech: configs/lm_train_phonemes.json
LM_ALIGNED_STEPS=${LM_ALIGNED_STEPS:-1800} # the track placed by a forced alignment: configs/lm_train_aligned.json
LM_ALIGNED2_STEPS=${LM_ALIGNED2_STEPS:-1000} # then on speech alone: configs/lm_train_aligned_continue.json
LM_MUSIC_STEPS=${LM_MUSIC_STEPS:-1000} # from lm-phonemes on music alone: configs/lm_train_music.json
LM_BEATS_STEPS=${LM_BEATS_STEPS:-1500} # from lm-music with a beat track added: configs/lm_train_beats.json
LM_BEATS2_STEPS=${LM_BEATS2_STEPS:-1500} # and again at a lower peak LR: configs/lm_train_beats_continue.json
NUM_PROC=${NUM_PROC:-2}
all_stages="data codec decoder decoder-periods pitch-head decoder-pitch decoder-edge decoder-speech tokenize lm lm-more lm-more2 lm-phonemes lm-aligned lm-aligned2 lm-music lm-beats lm-beats2 install decoder-speech-real decoder-choice eval"
stages=${1:-$all_stages}

for stage in $stages; do
  echo "=== $stage ($(date -u +%H:%M:%S))"
  case $stage in
    data)
      for kind in speech music; do
        [ -f "$RUNS/data/$kind/recipe.json" ] ||
          $RVQ data $kind --hours "$HOURS" --num-proc "$NUM_PROC" -o "$RUNS/data/$kind"
      done
      # More speakers for the speech decoder: festival's voices of other languages reading the same sentences.
      [ -f "$RUNS/data/speech_extra/recipe.json" ] ||
        $RVQ data speech --voice-set extra --hours "$EXTRA_HOURS" --num-proc "$NUM_PROC" -o "$RUNS/data/speech_extra"
      [ -f "$RUNS/data/speech_extra2/recipe.json" ] ||
        $RVQ data speech --voice-set extra2 --hours "$EXTRA2_HOURS" --num-proc "$NUM_PROC" \
          -o "$RUNS/data/speech_extra2" ;;
    codec)
      resume=$([ -d "$RUNS/codec/checkpoint" ] && echo --resume || true)
      $RVQ train-codec --config "$CODEC_CONFIG" --data "$RUNS/data/speech" "$RUNS/data/music" \
        --out "$RUNS/codec" --max-steps "$CODEC_STEPS" $resume ;;
    decoder)
      # Only the decoder trains (training.freeze_codes): the codes, hence tokenize and lm, do not depend on it.
      resume=$([ -d "$RUNS/codec_gan/checkpoint" ] && echo --resume || true)
      $RVQ train-codec --config configs/codec_spectral_small_decoder_gan.json --init-from "$RUNS/codec/final" \
        --data "$RUNS/data/speech" "$RUNS/data/music" --out "$RUNS/codec_gan" --max-steps "$DECODER_STEPS" $resume ;;
    decoder-periods)
      # The same, from the decoder stage, with HiFi-GAN's multi-period discriminator beside the MS-STFT one.
      resume=$([ -d "$RUNS/codec_mpd/checkpoint" ] && echo --resume || true)
      $RVQ train-codec --config configs/codec_spectral_small_decoder_mpd.json --init-from "$RUNS/codec_gan/final" \
        --data "$RUNS/data/speech" "$RUNS/data/music" --out "$RUNS/codec_mpd" --max-steps "$DECODER2_STEPS" $resume ;;
    pitch-head)
      [ -f "$RUNS/pitch_head/final/config.json" ] ||
        $RVQ train-pitch-head --codec "$RUNS/codec_mpd/final" --data "$RUNS/data/speech" "$RUNS/data/music" \
          --out "$RUNS/pitch_head" --steps "$PITCH_HEAD_STEPS" --batch-size 16 ;;
    decoder-pitch)
      # The pitch-phase decoder: voiced bins below 5 kHz take the phase of a harmonic source on the predicted f0.
      for steps in $PITCH_STEPS; do
        resume=$([ -d "$RUNS/codec_pitch/checkpoint" ] && echo --resume || true)
        $RVQ train-codec --config configs/codec_spectral_small_decoder_pitch.json --init-from "$RUNS/pitch_head/final" \
          --data "$RUNS/data/speech" "$RUNS/data/music" --out "$RUNS/codec_pitch" --max-steps "$steps" $resume
      done ;;
    decoder-edge)
      # No training: the pitch-phase decoder's weights, read with the source's own phase in the frame either side of a
      # voiced run (spectral.phase's edge module, its offsets held at zero: "offsets": false).
      $PYTHON -c 'import sys; from tokenizer import RVQCodec
RVQCodec.from_pretrained(sys.argv[1], spectral={"phase": {"edge": {"offsets": False}}}).save_pretrained(sys.argv[2])' \
        "$RUNS/codec_pitch/final" "$RUNS/codec_edge" ;;
    decoder-speech)
      # The decoder that speech decodes with (installed as the codec's decoder variant "speech"): the edge decoder
      # fine-tuned on speech alone, first with learned edge offsets, then with them dropped, then with the
      # phase-derivative loss added, then with that loss and learned edge offsets, then with learned residuals over
      # the harmonic source in voiced frames as well (phase settings the variant keeps), the mean of the last four,
      # then runs from that mean with a wider residual, their mean, then runs from it with a PESQ loss, their mean.
      resume=$([ -d "$RUNS/codec_speech_offsets/checkpoint" ] && echo --resume || true)
      $RVQ train-codec --config configs/codec_spectral_small_decoder_edge.json --init-from "$RUNS/codec_edge" \
        --data "$RUNS/data/speech" --out "$RUNS/codec_speech_offsets" --max-steps "$SPEECH_DECODER_STEPS" $resume
      resume=$([ -d "$RUNS/codec_speech_edges/checkpoint" ] && echo --resume || true)
      $RVQ train-codec --config configs/codec_spectral_small_decoder_edge_source.json \
        --init-from "$RUNS/codec_speech_offsets/final" --data "$RUNS/data/speech" --out "$RUNS/codec_speech_edges" \
        --max-steps "$SPEECH_DECODER2_STEPS" $resume
      resume=$([ -d "$RUNS/codec_speech_phase/checkpoint" ] && echo --resume || true)
      $RVQ train-codec --config configs/codec_spectral_small_decoder_speech_phase.json \
        --init-from "$RUNS/codec_speech_edges/final" --data "$RUNS/data/speech" --out "$RUNS/codec_speech_phase" \
        --max-steps "$SPEECH_DECODER3_STEPS" $resume
      resume=$([ -d "$RUNS/codec_speech_phase_offsets/checkpoint" ] && echo --resume || true)
      $RVQ train-codec --config configs/codec_spectral_small_decoder_speech_phase_offsets.json \
        --init-from "$RUNS/codec_speech_phase/final" --data "$RUNS/data/speech" \
        --out "$RUNS/codec_speech_phase_offsets" --max-steps "$SPEECH_DECODER4_STEPS" $resume
      # One run with voiced residuals: CONFIG OUT FROM SEED [VOICES [STEPS]], re-warmed from run FROM, on the English
      # speech (VOICES extra: pooled with the extra voice set; extra2: with the extra2 set as well).
      voiced_run() {
        local config=$1 out=$2 from=$3 seed=$4 voices=${5:-} steps=${6:-$SPEECH_DECODER5_STEPS} resume
        local data=("$RUNS/data/speech")
        case $voices in
          extra) data+=("$RUNS/data/speech_extra") ;;
          extra2) data+=("$RUNS/data/speech_extra" "$RUNS/data/speech_extra2") ;;
        esac
        resume=$([ -d "$RUNS/$out/checkpoint" ] && echo --resume || true)
        $RVQ train-codec --config "$config" --init-from "$RUNS/$from/final" --data "${data[@]}" --out "$RUNS/$out" \
          --seed "$seed" --max-steps "$steps" $resume
      }
      # Runs OUT:FROM:SEED[:VOICES] ("-" for FROM: the run before). The first four draw the same batches (seed 0);
      # the next three draw new ones and pool the extra voices with the English speech; then two siblings of the
      # seventh, both started from it, the second with the extra2 voices too.
      voiced=configs/codec_spectral_small_decoder_speech_voiced_offsets.json
      prev=codec_speech_phase_offsets
      for run in codec_speech_voiced:-:0 codec_speech_voiced2:-:0 codec_speech_voiced3:-:0 \
                 codec_speech_voiced4:-:0 codec_speech_extra:-:1:extra codec_speech_extra2:-:2:extra \
                 codec_speech_extra3:-:3:extra codec_speech_sib4:codec_speech_extra3:4:extra \
                 codec_speech_sib5:codec_speech_extra3:5:extra2; do
        IFS=: read -r out from seed voices <<< "$run"
        [ "$from" = - ] && from=$prev
        voiced_run $voiced "$out" "$from" "$seed" "$voices"
        prev=$out
      done
      # The seventh run resumed (its discriminator and optimizer kept) for as many steps again, in a copy.
      if [ ! -d "$RUNS/codec_speech_long" ]; then
        rm -rf "$RUNS/codec_speech_long.tmp"
        cp -r "$RUNS/codec_speech_extra3" "$RUNS/codec_speech_long.tmp" && mv "$RUNS/codec_speech_long.tmp" "$RUNS/codec_speech_long"
      fi
      $RVQ train-codec --config $voiced --init-from "$RUNS/codec_speech_extra2/final" \
        --data "$RUNS/data/speech" "$RUNS/data/speech_extra" --out "$RUNS/codec_speech_long" --seed 3 \
        --max-steps $((2 * SPEECH_DECODER5_STEPS)) --resume
      # The mean of the seventh run's decoder and its three descendants' (same codes), where the wide runs start.
      $RVQ average-decoders "$RUNS"/codec_speech_{extra3,long,sib4,sib5}/final -o "$RUNS/codec_speech_mean/final" \
        --fp16
      # Then four runs from that mean with a wider voiced residual (a GELU branch beside the linear one, starting at
      # zero), seeds 7-10, the second and fourth with the extra2 voices too, and their mean, stored in float16 (the
      # PESQ runs start from its float16 weights).
      for run in 7:extra 8:extra2 9:extra 10:extra2; do
        IFS=: read -r seed voices <<< "$run"
        voiced_run configs/codec_spectral_small_decoder_speech_voiced_wide.json "codec_speech_wide$seed" \
          codec_speech_mean "$seed" "$voices"
      done
      $RVQ average-decoders "$RUNS"/codec_speech_wide{7,8,9,10}/final -o "$RUNS/codec_speech_wide_mean/final" \
        --fp16
      # Then four runs from that mean with PESQ's loudness disturbance as a loss as well, seeds 7-10, all with the
      # extra2 voices; their mean is the speech decoder that install ships.
      for seed in 7 8 9 10; do
        voiced_run configs/codec_spectral_small_decoder_speech_pesq.json "codec_speech_pesq$seed" \
          codec_speech_wide_mean "$seed" extra2 "$SPEECH_DECODER6_STEPS"
      done
      $RVQ average-decoders "$RUNS"/codec_speech_pesq{7,8,9,10}/final -o "$RUNS/codec_speech/final" ;;
    tokenize)
      for kind in speech music; do
        $RVQ tokenize "$RUNS/data/$kind" -o "$RUNS/codes/$kind" --codec "$RUNS/codec/final" \
          --num-proc "$NUM_PROC" --no-progress
      done ;;
    lm)
      resume=$([ -d "$RUNS/lm/checkpoint" ] && echo --resume || true)
      $RVQ train-lm --config configs/lm_base.json --training-config configs/lm_train_base.json \
        --codec "$RUNS/codec/final" --data "$RUNS/codes/speech" "$RUNS/codes/music" --out "$RUNS/lm" \
        --max-steps "$LM_STEPS" $resume ;;
    lm-more)
      resume=$([ -d "$RUNS/lm_more/checkpoint" ] && echo --resume || true)
      $RVQ finetune --model "$RUNS/lm/final" --training-config configs/lm_train_base_continue.json \
        --data "$RUNS/codes/speech" "$RUNS/codes/music" --out "$RUNS/lm_more" --max-steps "$LM_MORE_STEPS" $resume ;;
    lm-more2)
      resume=$([ -d "$RUNS/lm_more2/checkpoint" ] && echo --resume || true)
      $RVQ finetune --model "$RUNS/lm_more/final" --training-config configs/lm_train_base_continue2.json \
        --data "$RUNS/codes/speech" "$RUNS/codes/music" --out "$RUNS/lm_more2" --max-steps "$LM_MORE2_STEPS" $resume ;;
    lm-phonemes)
      resume=$([ -d "$RUNS/lm_phonemes/checkpoint" ] && echo --resume || true)
      $RVQ finetune --model "$RUNS/lm_more2/final" --training-config configs/lm_train_phonemes.json \
        --data "$RUNS/codes/speech" "$RUNS/codes/music" --out "$RUNS/lm_phonemes" --max-steps "$LM_PHONEME_STEPS" \
        $resume ;;
    lm-aligned)
      resume=$([ -d "$RUNS/lm_aligned/checkpoint" ] && echo --resume || true)
      $RVQ finetune --model "$RUNS/lm_phonemes/final" --training-config configs/lm_train_aligned.json \
        --data "$RUNS/codes/speech" "$RUNS/codes/music" --out "$RUNS/lm_aligned" --max-steps "$LM_ALIGNED_STEPS" \
        $resume ;;
    lm-aligned2)
      # The speech LM's last stage: the aligned track again, on the speech codes alone, at a lower peak LR.
      resume=$([ -d "$RUNS/lm_aligned2/checkpoint" ] && echo --resume || true)
      $RVQ finetune --model "$RUNS/lm_aligned/final" --training-config configs/lm_train_aligned_continue.json \
        --data "$RUNS/codes/speech" --out "$RUNS/lm_aligned2" --max-steps "$LM_ALIGNED2_STEPS" $resume ;;
    lm-music)
      resume=$([ -d "$RUNS/lm_music/checkpoint" ] && echo --resume || true)
      $RVQ finetune --model "$RUNS/lm_phonemes/final" --training-config configs/lm_train_music.json \
        --data "$RUNS/codes/music" --out "$RUNS/lm_music" --max-steps "$LM_MUSIC_STEPS" $resume ;;
    lm-beats)
      # A beat track for the music LM (the tempo each caption names, as beat phase at every frame).
      resume=$([ -d "$RUNS/lm_beats/checkpoint" ] && echo --resume || true)
      $RVQ finetune --model "$RUNS/lm_music/final" --training-config configs/lm_train_beats.json \
        --data "$RUNS/codes/music" --out "$RUNS/lm_beats" --max-steps "$LM_BEATS_STEPS" $resume ;;
    lm-beats2)
      # The music LM's last stage: the same, re-warmed to a lower peak.
      resume=$([ -d "$RUNS/lm_beats2/checkpoint" ] && echo --resume || true)
      $RVQ finetune --model "$RUNS/lm_beats/final" --training-config configs/lm_train_beats_continue.json \
        --data "$RUNS/codes/music" --out "$RUNS/lm_beats2" --max-steps "$LM_BEATS2_STEPS" $resume ;;
    install)
      $PYTHON -m pipelines.defaults --codec "$RUNS/codec_edge" --music-model "$RUNS/lm_beats2/final" \
        --speech-model "$RUNS/lm_aligned2/final" --speech-decoder "$RUNS/codec_speech/final" --codec-fp16 \
        --lm-fp16 music speech ;;
    decoder-speech-real)
      # After install: the speech decoder that install wrote, fine-tuned on real recordings (Asterisk's prompts) and
      # synthetic speech with its codes fixed (the LMs' codes stay valid), resumed to each of SPEECH_REAL_STEPS (each
      # resume re-warms the LR and cools it down again); the mean of the installed decoder and the fine-tuned one
      # replaces the installed one (it loses less on synthetic speech than the fine-tuned one alone).
      [ -f "$RUNS/data/choice_speech/recipe.json" ] || $RVQ data speech --hours 2 -o "$RUNS/data/choice_speech"
      [ -f "$RUNS/data/real_speech/recipe.json" ] || $RVQ data real-speech --hours 10 --num-proc "$NUM_PROC" \
        -o "$RUNS/data/real_speech"
      # The installed speech decoder as a codec folder of its own, copied once (a rerun starts from the same one).
      [ -f "$RUNS/codec_speech_installed/final/config.json" ] ||
        $PYTHON scripts/decoder_variant.py extract pipelines/assets/codec speech "$RUNS/codec_speech_installed/final"
      for steps in $SPEECH_REAL_STEPS; do
        resume=$([ -d "$RUNS/codec_speech_real/checkpoint" ] && echo --resume || true)
        $RVQ train-codec --config configs/codec_spectral_small_decoder_speech_real.json \
          --init-from "$RUNS/codec_speech_installed/final" --data "$RUNS/data/real_speech" "$RUNS/data/choice_speech" \
          --out "$RUNS/codec_speech_real" --max-steps "$steps" $resume
      done
      $RVQ average-decoders "$RUNS"/codec_speech_{installed,real}/final -o "$RUNS/codec_speech_real_mean/final"
      $PYTHON scripts/decoder_variant.py install "$RUNS/codec_speech_real_mean/final" pipelines/assets/codec speech ;;
    decoder-choice)
      # After install, which writes the codec folder anew: the choice is saved into pipelines/assets/codec.
      [ -f "$RUNS/data/choice_speech/recipe.json" ] || $RVQ data speech --hours 2 -o "$RUNS/data/choice_speech"
      [ -f "$RUNS/data/choice_music/recipe.json" ] || $RVQ data music --hours 1 -o "$RUNS/data/choice_music"
      [ -f "$RUNS/data/real_speech/recipe.json" ] || $RVQ data real-speech --hours 10 --num-proc "$NUM_PROC" \
        -o "$RUNS/data/real_speech"
      [ -f "$RUNS/data/real_music/recipe.json" ] || $RVQ data real-music --hours 10 -o "$RUNS/data/real_music"
      $RVQ fit-decoder-choice --codec pipelines/assets/codec \
        --speech "$RUNS/data/choice_speech" "$RUNS/data/real_speech" \
        --music "$RUNS/data/choice_music" "$RUNS/data/real_music" ;;
    eval)
      mkdir -p "$RUNS/eval"
      # Speech as the speech LM decodes it (the codec's speech decoder); music through the codec's own decoder.
      $RVQ eval-codec --data "$RUNS/data/speech" --max-clips 50 --variant speech -o "$RUNS/eval/codec_speech.json"
      $RVQ eval-codec --data "$RUNS/data/music" --max-clips 50 -o "$RUNS/eval/codec_music.json"
      $RVQ eval-tts --data "$RUNS/data/speech" --max-clips 50 --seed 0 -o "$RUNS/eval/tts.json"
      [ -f "$RUNS/eval/classifier/config.json" ] ||
        $RVQ train-music-classifier --data "$RUNS/data/music" -o "$RUNS/eval/classifier"
      $RVQ eval-music --data "$RUNS/data/music" --classifier "$RUNS/eval/classifier" --max-clips 50 --seed 0 \
        -o "$RUNS/eval/music.json" ;;
    *) echo "unknown stage $stage (stages: $all_stages)" >&2
       exit 2 ;;
  esac
done
