"""Русский интерфейс: сообщения UI и CLI (MESSAGES) и известные сообщения шлюза (GATEWAY).

Ключ — английский текст как он написан в коде; значение — перевод, написанный и вычитанный
вручную, с теми же {подстановками}. Множественное число — кортеж из трёх форм
(1 модель, 2 модели, 5 моделей; см. `russian_plural`). Термины выбраны один раз и держатся
везде: resident — «активная» (модель, что сейчас на GPU и отвечает), switch — «переключение»,
sleep / wake — «усыпить» / «разбудить», unload — «выгрузить», pull — «скачать», host RAM —
«ОЗУ хоста», VRAM — «видеопамять», prompt — «запрос», preset — «шаблон».
Имена моделей не склоняются, поэтому там, где важно согласование, стоит слово «модель».
"""

from __future__ import annotations

MESSAGES: dict[str, str | tuple[str, str, str]] = {
    # --- the sidebar ----------------------------------------------------------------------
    "Gateway `{url}` · resident: **{resident}** · queued: {queued}": (
        "Шлюз `{url}` · активна: **{resident}** · в очереди: {queued}"
    ),
    "none": "нет",
    # --- what the pool keeps and what comes next (the predictor) ----------------------------
    "Likely next within {seconds} s: {models}": "Вероятно, в ближайшие {seconds} с: {models}",
    "Likely next: {models}": "Вероятно, следующими: {models}",
    "kept in the pool: {why}": "оставлена в пуле: {why}",
    "{name} kept: {why}": "{name} оставлена: {why}",
    "next (chance of a request within {seconds} s): {models}": (
        "далее (вероятность запроса в ближайшие {seconds} с): {models}"
    ),
    "next (chance of a request): {models}": "далее (вероятность запроса): {models}",
    "nothing": "ничего",
    "staged: {now}; {loads} staged loads so far, {used} used": (
        "подготовлено: {now}; подготовок всего: {loads}, пригодилось: {used}"
    ),
    # --- a cluster's replicas (ui/replicas.py) ---------------------------------------------
    "Cluster of **{n}** replica": (
        "Кластер из **{n}** реплики",
        "Кластер из **{n}** реплик",
        "Кластер из **{n}** реплик",
    ),
    "GPU {ids}": "GPU {ids}",
    "nothing resident": "нет активной модели",
    "`{replica}` on {node} · {gpu} · {held} · queued {queued}": (
        "`{replica}` на {node} · {gpu} · {held} · в очереди: {queued}"
    ),
    "signed in as **{profile}**": "вы вошли как **{profile}**",
    "switching to **{target}**: {phase} ({seconds} s)": "переключение на **{target}**: {phase} ({seconds} с)",
    "Log of {name}": "Журнал модели {name}",
    "(empty)": "(пусто)",
    "Models": "Модели",
    "Retry": "Повторить",
    "cannot run here: {why}": "здесь не запустится: {why}",
    "last start failed: {why}": "последний запуск не удался: {why}",
    "Wake": "Разбудить",
    "Switch": "Переключить",
    "Resident": "Активна",
    "Sleep": "Усыпить",
    "Unload": "Выгрузить",
    "Pull": "Скачать",
    "Park the weights in host RAM; the next request wakes it in a moment": (
        "Убрать веса в ОЗУ хоста; следующий запрос разбудит модель за мгновение"
    ),
    "{name} is going to sleep.": "Модель {name} засыпает.",
    "Could not put {name} to sleep: {why}": "Не удалось усыпить модель {name}: {why}",
    "Download {name}'s files into the gateway's Hugging Face cache (same as `vlmswap pull {name}`).": (
        "Скачать файлы модели {name} в кэш Hugging Face на шлюзе (то же, что `vlmswap pull {name}`)."
    ),
    "Could not pull {name}: {why}": "Не удалось скачать модель {name}: {why}",
    "{name} unloaded.": "Модель {name} выгружена.",
    "Could not unload {name}: {why}": "Не удалось выгрузить модель {name}: {why}",
    # --- preferences (sidebar) ------------------------------------------------------------
    "Preferences": "Настройки",
    "Language": "Язык",
    "The browser's": "Как в браузере",
    "Prompt presets": "Шаблоны запросов",
    "Remove": "Удалить",
    "Name": "Название",
    "Prompt": "Запрос",
    "For": "Для",
    "Chat": "Чат",
    "OCR": "OCR",
    "Add preset": "Добавить шаблон",
    "A preset needs a name and a text.": "У шаблона должны быть название и текст.",
    "Could not save the preferences: {why}": "Не удалось сохранить настройки: {why}",
    # --- a switch, live -------------------------------------------------------------------
    "Switching to {name}…": "Переключение на {name}…",
    "Asking the gateway…": "Запрос к шлюзу…",
    "Could not switch to {name}": "Не удалось переключиться на {name}",
    "Ready · {seconds} s": "Готово · {seconds} с",
    "{name} is ready ({seconds} s)": "Модель {name} готова ({seconds} с)",
    "{name} is ready (switch took {seconds} s).": "Модель {name} готова (переключение заняло {seconds} с).",
    "{name} failed to start": "Модель {name} не запустилась",
    "{name} failed to start: {why}": "Модель {name} не запустилась: {why}",
    "{phase} {seconds} s": "{phase} {seconds} с",
    "Switch: {steps}": "Переключение: {steps}",
    "Last log lines of the backend:": "Последние строки журнала бэкенда:",
    "Dismiss": "Скрыть",
    # phases of a switch
    "Draining requests in flight": "Завершение текущих запросов",
    "Putting the resident model to sleep": "Усыпление активной модели",
    "Stopping the resident model": "Остановка активной модели",
    "Waiting for VRAM to be released": "Ожидание освобождения видеопамяти",
    "Waking from host RAM": "Пробуждение из ОЗУ хоста",
    "Starting": "Запуск",
    "Loading": "Загрузка",
    "Warming up": "Прогрев",
    "Ready": "Готово",
    "Failed": "Ошибка",
    "Waiting": "Ожидание",
    "{phase} · {elapsed} s · about {left} s left": "{phase} · {elapsed} с · осталось около {left} с",
    "{phase} · {elapsed} s": "{phase} · {elapsed} с",
    # model states (a model: feminine)
    "ready": "готова",
    "starting": "запускается",
    "waking": "просыпается",
    "stopping": "останавливается",
    "sleeping": "спит",
    "failed": "сбой",
    "stopped": "остановлена",
    # capabilities
    "layout": "разметка",
    "chat": "чат",
    "grounding": "локализация",
    # --- what the sidebar says about a model ----------------------------------------------
    "{size} GB": "{size} ГБ",
    "{size} MB": "{size} МБ",
    "{size} kB": "{size} КБ",
    "size unknown": "размер неизвестен",
    "cold start {seconds} s": "холодный старт {seconds} с",
    "wake {seconds} s": "пробуждение {seconds} с",
    "peak VRAM {size}": "пик видеопамяти {size}",
    "learned: {what}": "по замерам: {what}",
    "(1 run)": ("({n} запуск)", "({n} запуска)", "({n} запусков)"),
    "needs {size} VRAM": "нужно {size} видеопамяти",
    "CPU only, no VRAM": "только CPU, без видеопамяти",
    "no GPU": "нет GPU",
    "fits": "помещается",
    "more than free now": "больше, чем сейчас свободно",
    "{size} free ({verdict})": "свободно {size} ({verdict})",
    "measured": "измерено",
    "estimated": "оценка",
    "asleep in host RAM: {size} ({how})": "спит в ОЗУ хоста: {size} ({how})",
    "last woke in {seconds} s": "последнее пробуждение за {seconds} с",
    "Sleeping pool: {n} model": ("Пул спящих: {n} модель", "Пул спящих: {n} модели", "Пул спящих: {n} моделей"),
    "(at most {n})": "(не более {n})",
    "{used} of {budget} host RAM budget": "{used} из {budget}, отведённых в ОЗУ хоста",
    "{n} in flight": "в работе: {n}",
    "{n} queued": "в очереди: {n}",
    "next start allowed in {seconds} s": "следующий запуск — через {seconds} с",
    "Host RAM: {used} of {total} in use": "ОЗУ хоста: занято {used} из {total}",
    "GPU": "GPU",
    "other": "прочее",
    "{gpu}: {used} of {total} used": "{gpu}: занято {used} из {total}",
    # --- pulls -------------------------------------------------------------------------------
    "Pulling: listing the files…": "Скачивание: получаем список файлов…",
    "Pulling: {done} of {total}": "Скачивание: {done} из {total}",
    "({done}/{total} files)": "(файлов: {done}/{total})",
    "Downloaded ({size})": "Скачано ({size})",
    "Pull failed: {why}": "Скачать не удалось: {why}",
    "unknown error": "неизвестная ошибка",
    "No chat model can run here yet: **{name}** can once its files are here ({size}). "
    "Press **Pull** on it in the sidebar, or run `vlmswap pull {name}` on the gateway's machine.": (
        "Здесь пока не запустится ни одна модель для чата: **{name}** сможет, когда её файлы будут "
        "скачаны ({size}). Нажмите **Скачать** у неё на боковой панели или выполните "
        "`vlmswap pull {name}` на машине шлюза."
    ),
    "No chat model can run here. **{name}** runs on a CPU but here it says: {why}. "
    "Install the transformers extra (`pip install 'vlmswap[transformers]'`), restart the gateway, "
    "then `vlmswap pull {name}`.": (
        "Здесь не запустится ни одна модель для чата. **{name}** работает на CPU, но здесь сообщает: "
        "{why}. Установите дополнение transformers (`pip install 'vlmswap[transformers]'`), "
        "перезапустите шлюз, затем выполните `vlmswap pull {name}`."
    ),
    "No chat model can run here. Add one to the registry, e.g. a small image-text-to-text checkpoint "
    "through the transformers engine (see docs/models.md), then `vlmswap pull NAME`.": (
        "Здесь не запустится ни одна модель для чата. Добавьте её в реестр — например, небольшой "
        "чекпойнт image-text-to-text через движок transformers (см. docs/models.md), — затем "
        "выполните `vlmswap pull ИМЯ`."
    ),
    # --- the OCR page ---------------------------------------------------------------------
    "OCR documents": "Распознавание документов",
    "The gateway is not reachable; see the sidebar for how to start it.": (
        "Шлюз недоступен; как его запустить, сказано на боковой панели."
    ),
    "No OCR model can run here; the sidebar says why for each model.": (
        "Здесь не запустится ни одна OCR-модель; почему — сказано у каждой модели на боковой панели."
    ),
    "Images or a PDF": "Изображения или PDF",
    "Model": "Модель",
    "Mode": "Режим",
    "PDF dpi": "dpi для PDF",
    "Pages": "Страницы",
    "all": "все",
    "Pages of a PDF to read, e.g. 1-3,7; empty: all.": "Какие страницы PDF читать, например 1-3,7; пусто — все.",
    "the mode's own prompt": "стандартный запрос режима",
    "A saved preset (sidebar, Preferences) is sent as the prompt of every page.": (
        "Сохранённый шаблон (боковая панель, «Настройки») отправляется как запрос для каждой страницы."
    ),
    "Run OCR": "Распознать",
    "Layout + text": "Разметка и текст",
    "Layout only": "Только разметка",
    "Text only": "Только текст",
    "Web page layout": "Разметка веб-страницы",
    "Scene text (lines)": "Текст на фото (строки)",
    "Image to SVG": "Изображение в SVG",
    "{name} is {size} MB, over the upload limit of {limit} MB.": (
        "{name}: {size} МБ — больше предела загрузки в {limit} МБ."
    ),
    "{name} cannot be used: {why}": "Файл {name} не подходит: {why}",
    "ETA after the first page": "оценка времени — после первой страницы",
    "about {n} s left": "осталось около {n} с",
    "about {n} min left": "осталось около {n} мин",
    "Cancel": "Отменить",
    "Waiting for the first page…": "Ждём первую страницу…",
    "queued": "в очереди",
    "running": "выполняется",
    "done": "готово",
    "cancelled": "отменено",
    "{done} of {n} page": ("{done} из {n} страницы", "{done} из {n} страниц", "{done} из {n} страниц"),
    "({n} failed)": "(с ошибкой: {n})",
    "s": "с",
    "{source} page {number}": "{source}, страница {number}",
    "{seconds} s": "{seconds} с",
    "_No page read yet._": "_Пока не прочитано ни одной страницы._",
    "Latest: {source} page {number}": "Последняя: {source}, страница {number}",
    "_(no text)_": "_(нет текста)_",
    "Recent jobs ({n})": "Недавние задания ({n})",
    "{done}/{total} pages": "страниц: {done}/{total}",
    "{n} failed": "с ошибкой: {n}",
    "Open": "Открыть",
    "◀ Previous": "◀ Назад",
    "Next ▶": "Вперёд ▶",
    "Page {i} of {n}": "Страница {i} из {n}",
    "{source} · page {number}": "{source} · страница {number}",
    "This page could not be read: {why}": "Эту страницу прочитать не удалось: {why}",
    "{n} block": ("{n} блок", "{n} блока", "{n} блоков"),
    "Blocks": "Блоки",
    "Highlight block": "Подсветить блок",
    "Annotated PNG": "PNG с разметкой",
    "ZIP of all": "ZIP со всем",
    "Job {states}: showing the {n} pages read.": "Задание: {states}; показаны прочитанные страницы ({n}).",
    "The model's output for this page was unusable as a layout; only its plain text was salvaged": (
        "Ответ модели для этой страницы не годится как разметка; удалось сохранить только простой текст"
    ),
    "This model reads text only; the page was read in text mode, without boxes": (
        "Эта модель читает только текст; страница прочитана в текстовом режиме, без рамок"
    ),
    "The model's output for this page was malformed; what is shown was salvaged": (
        "Ответ модели для этой страницы был повреждён; показано то, что удалось восстановить"
    ),
    "Notes on this page's output": "Замечания к результату этой страницы",
    # --- the Chat page --------------------------------------------------------------------
    "Chat about images": "Чат об изображениях",
    "Sending to a model that is not resident switches to it first.": (
        "Если модель не активна, сначала произойдёт переключение на неё."
    ),
    "Prompt preset": "Шаблон запроса",
    "Its text goes before what you type (presets: sidebar, Preferences).": (
        "Его текст ставится перед вашим (шаблоны — на боковой панели, в «Настройках»)."
    ),
    "Clear history": "Очистить историю",
    "Ask about the attached images…": "Спросите о приложенных изображениях…",
    "Could not attach the image: {why}": "Не удалось приложить изображение: {why}",
    "(image)": "(изображение)",
    "The model could not answer: {why}": "Модель не смогла ответить: {why}",
    # --- the CLI --------------------------------------------------------------------------
    "switching to {name}": "переключение на {name}",
    "(about {n} s left)": "(осталось около {n} с)",
    "failed:": "сбой:",
    "--- last log lines ---": "--- последние строки журнала ---",
    "(woken in {seconds} s)": "(разбужена за {seconds} с)",
    "(started in {seconds} s)": "(запущена за {seconds} с)",
    "{name} is ready": "Модель {name} готова",
    "nothing to do": "ничего делать не нужно",
    "putting {name} to sleep": "модель {name} засыпает",
    "unloading {names}": "выгружаются: {names}",
    "nothing to unload": "выгружать нечего",
    "cold start": "холодный старт",
    "wake": "пробуждение",
    "peak VRAM": "пик видеопамяти",
    "RAM asleep": "ОЗУ во сне",
    "GiB": "ГиБ",
    "learned per model: median (samples)": "замеры по моделям: медиана (число замеров)",
    "model": "модель",
    "{used} / {total} GiB used": "занято {used} / {total} ГиБ",
    "resident: [bold]{resident}[/bold]   queue: {queue}   in flight: {in_flight}   switches: {switches}": (
        "активна: [bold]{resident}[/bold]   очередь: {queue}   в работе: {in_flight}   переключений: {switches}"
    ),
    "at most {n}": "не более {n}",
    "sleeping pool: {n} asleep, {used} / {budget} GiB host RAM": (
        "пул спящих: моделей {n}, {used} / {budget} ГиБ ОЗУ хоста"
    ),
    "switch: to {target} ({phase}, {seconds} s)": "переключение: на {target} ({phase}, {seconds} с)",
    "served name": "имя в API",
    "state": "состояние",
    "in flight": "в работе",
    "last start": "посл. запуск",
    "last wake": "посл. пробуждение",
    "note": "примечание",
    "files ok": "файлов прочитано",
    "files failed": "файлов с ошибкой",
    "pages": "страниц",
    "blocks": "блоков",
    "seconds": "секунд",
    "pages flagged": "страниц с пометками",
    "model {name}": "модель {name}",
    "mode {mode}": "режим {mode}",
    "pages {pages}": "страницы {pages}",
    "dpi {dpi}": "dpi {dpi}",
    "from the saved preferences: {what}": "из сохранённых настроек: {what}",
    "wrote {n} files to {out}": "записано файлов: {n}, в {out}",
    "unknown --format {what}; choose from {formats}": "неизвестный --format {what}; выберите из {formats}",
    "{gateway} serves no document jobs (an older gateway?); reading page by page through its chat API": (
        "{gateway} не выполняет задания с документами (старая версия шлюза?); читаю постранично через его API чата"
    ),
    "{n} s": "{n} с",
    "{n} min": "{n} мин",
    "ETA": "осталось",
    "page {n} failed: {why}": "страница {n} не прочитана: {why}",
    "job {state}": "задание: {state}",
    "cancelled: {what}": "отменено: {what}",
    "(job {id}, pages kept: {n})": "(задание {id}, сохранено страниц: {n})",
    "(job {id}: {why})": "(задание {id}: {why})",
    "nothing was running": "ничего не выполнялось",
    "id": "id",
    "file": "файл",
    "submitted": "отправлено",
    "job [bold]{id}[/bold]  [{colour}]{state}[/]  {source}  model {model}  mode {mode}  dpi {dpi}": (
        "задание [bold]{id}[/bold]  [{colour}]{state}[/]  {source}  модель {model}  режим {mode}  dpi {dpi}"
    ),
    "pages {done}/{total} done, {failed} failed   ETA {eta}   submitted {submitted}   ended {ended}": (
        "страниц готово: {done}/{total}, с ошибкой: {failed}   осталось {eta}   отправлено {submitted}"
        "   завершено {ended}"
    ),
    "page": "страница",
    "tries": "попыток",
    "error": "ошибка",
    "removed": "удалено",
    "pages kept: {done} of {total}": "сохранено страниц: {done} из {total}",
    "job {id}: {state} ({kept})": "задание {id}: {state} ({kept})",
    "job {id} is {state}: {done} of {total} pages so far": "задание {id}: {state}; пока страниц: {done} из {total}",
    "wrote {out}": "записано: {out}",
    "unknown model (known: {ids})": "неизвестная модель (известны: {ids})",
    "interrupted; the files finished so far are kept, `vlmswap pull {name}` fetches the rest": (
        "прервано; уже скачанные файлы сохранены, `vlmswap pull {name}` докачает остальное"
    ),
    "{done}/{total} files, {got} of {size}": "файлов {done}/{total}, {got} из {size}",
    "{repo} is in {folder}": "{repo} лежит в {folder}",
    "streamlit is not installed (pip install 'vlmswap[ui]')": "streamlit не установлен (pip install 'vlmswap[ui]')",
    "gateway {url}": "шлюз {url}",
    "no such file": "нет такого файла",
    "the gateway": "шлюз",
    "the UI": "интерфейс",
    "{what} exited with code {code}": "{what} завершился с кодом {code}",
    "no answer from {urls} after {seconds} s": "нет ответа от {urls} за {seconds} с",
    "vlmswap gateway: {url}  (OpenAI API: {url}/v1)": "шлюз vlmswap: {url}  (OpenAI API: {url}/v1)",
    "vlmswap web UI:  {url}": "веб-интерфейс vlmswap: {url}",
    "Press Ctrl-C to stop both.": "Ctrl-C остановит и шлюз, и интерфейс.",
    "{what} exited with code {code}; stopping": "{what} завершился с кодом {code}; останавливаю всё",
    "ok ({n} models)": "ок (моделей: {n})",
    "vlmswap registry ({file})": "реестр vlmswap ({file})",
    "default": "встроенный",
    "name": "имя",
    "family": "семейство",
    "can do": "умеет",
    "GB": "ГБ",
    "port": "порт",
    "runs here?": "запустится здесь?",
    "auto": "авто",
    "yes": "да",
    "no": "нет",
}

GATEWAY: dict[str, str] = {
    # the GPU probe
    "no GPU found: CPU only": "GPU не найден: работаем только на CPU",
    "no NVIDIA GPU found: CPU only": "GPU NVIDIA не найден: работаем только на CPU",
    "no AMD GPU found: CPU only": "GPU AMD не найден: работаем только на CPU",
    "GPU probing is off (VLMSWAP_GPU=none): CPU only": "опрос GPU выключен (VLMSWAP_GPU=none): работаем только на CPU",
    "reading the NVIDIA GPU failed": "не удалось прочитать данные GPU NVIDIA",
    "reading the AMD GPU failed": "не удалось прочитать данные GPU AMD",
    "no AMD GPU with index {index}": "нет GPU AMD с номером {index}",
    # why a model cannot run here
    "no GPU found (NVIDIA or AMD)": "GPU не найден (ни NVIDIA, ни AMD)",
    "vllm not installed": "vllm не установлен",
    "docker extra not installed": "не установлено дополнение docker",
    "transformers extra not installed": "не установлено дополнение transformers",
    "not downloaded ({size})": "не скачана ({size})",
    "not downloaded": "не скачана",
    # admission, scheduling, profiles
    "The model `{model}` does not exist. Known models: {known}": "Модели `{model}` нет. Известные модели: {known}",
    "unknown model {model}": "неизвестная модель {model}",
    "queue full ({n} requests waiting)": "очередь заполнена (ждут запросов: {n})",
    "{model} failed recently; retrying after a backoff": (
        "модель {model} недавно не запустилась; новая попытка — после паузы"
    ),
    "{model} failed recently; retrying after a backoff (last error: {error})": (
        "модель {model} недавно не запустилась; новая попытка — после паузы (последняя ошибка: {error})"
    ),
    "{model} failed to start: {error}": "модель {model} не запустилась: {error}",
    "{model} crashed: {error}": "модель {model} аварийно завершилась: {error}",
    "{model} was not ready after {seconds} s": "модель {model} не готова и через {seconds} с",
    "{model} has no sleep mode (sleep_mode: false in the registry); unload it instead": (
        "у модели {model} нет режима сна (sleep_mode: false в реестре); выгрузите её вместо этого"
    ),
    "the load of {model} was superseded": "загрузку модели {model} заменила более поздняя",
    "profile {profile} may not use {model}": "профилю {profile} нельзя использовать {model}",
    "profile {profile} may not use the admin API": "профилю {profile} нельзя пользоваться API администратора",
    "profile {profile} is over its limit (requests_per_minute {rpm}, max_concurrent {concurrent})": (
        "профиль {profile} превысил свой предел (requests_per_minute {rpm}, max_concurrent {concurrent})"
    ),
    "missing or wrong API key (send `Authorization: Bearer KEY`)": (
        "нет ключа API или он неверный (пришлите `Authorization: Bearer KEY`)"
    ),
    "request body of {n} bytes is over the limit of {limit} bytes (gateway.max_body_mb)": (
        "тело запроса ({n} байт) больше предела в {limit} байт (gateway.max_body_mb)"
    ),
    "request body is over the limit of {limit} bytes (gateway.max_body_mb)": (
        "тело запроса больше предела в {limit} байт (gateway.max_body_mb)"
    ),
    "the gateway is shutting down": "шлюз останавливается",
    "the gateway is not running": "шлюз не работает",
    # documents and jobs
    "{name}: not an image or PDF (supported: {kinds})": "{name}: это не изображение и не PDF (поддерживаются: {kinds})",
    "{name}: file is empty (0 bytes)": "{name}: файл пуст (0 байт)",
    "{name}: encrypted PDF (needs a password)": "{name}: PDF зашифрован (нужен пароль)",
    "{name}: corrupt PDF ({why})": "{name}: PDF повреждён ({why})",
    "{name}: PDF has no pages": "{name}: в PDF нет страниц",
    "{name}: bad page range {spec} (expected e.g. 1-3,7)": (
        "{name}: неверный диапазон страниц {spec} (ожидается, например, 1-3,7)"
    ),
    "{name}: page range {part} is outside the document ({count} pages)": (
        "{name}: диапазон страниц {part} выходит за пределы документа (страниц: {count})"
    ),
    "{name}: page range {part} is outside the document ({count} page)": (
        "{name}: диапазон страниц {part} выходит за пределы документа (страниц: {count})"
    ),
    "{name}: file is over the limit of {cap} bytes (gateway.jobs_max_upload_mb)": (
        "{name}: файл больше предела в {cap} байт (gateway.jobs_max_upload_mb)"
    ),
    "{name}: {n} pages asked for, over the limit of {limit} per job (gateway.jobs_max_pages); split it with `pages`": (
        "{name}: запрошено страниц: {n}, больше предела в {limit} на задание (gateway.jobs_max_pages); "
        "разделите документ с помощью `pages`"
    ),
    "{n} document jobs are already queued or running (gateway.jobs_max_queued); try again when one has finished": (
        "заданий с документами уже ждут или выполняются: {n} (gateway.jobs_max_queued); "
        "попробуйте снова, когда одно завершится"
    ),
    "one `file` per job: submit each document as its own job": (
        "один `file` на задание: отправляйте каждый документ отдельным заданием"
    ),
    "document jobs are not running": "задания с документами не выполняются",
    # preferences
    "{field}: unknown model {model}": "{field}: неизвестная модель {model}",
    "{field}: this profile may not use {model}": "{field}: этому профилю нельзя использовать {model}",
    "{field}: {model} cannot do {task} (capabilities: {caps})": (
        "{field}: модель {model} не подходит для задачи {task} (умеет: {caps})"
    ),
    # what a switch says as it goes
    "waiting for {name}'s GPU memory to be released": "ждём, пока {name} освободит память GPU",
    "released in {seconds} s; {mib} MiB in use": "освобождено за {seconds} с; занято {mib} МиБ",
    "no GPU reading, skipped ({reason})": "нет данных GPU, шаг пропущен ({reason})",
    "no GPU reading: memory check after sleep skipped ({reason})": (
        "нет данных GPU: проверка памяти после сна пропущена ({reason})"
    ),
    "launching {name} ({backend})": "запуск {name} ({backend})",
    "{name} started; waiting for {health} and /v1/models": "{name} запущена; ждём {health} и /v1/models",
    "{name} ready in {seconds} s": "{name} готова за {seconds} с",
    "putting {name} to sleep (level {level})": "{name} засыпает (уровень {level})",
    "{name} asleep in {seconds} s": "{name} уснула за {seconds} с",
    "waking {name} (level {level})": "пробуждение {name} (уровень {level})",
    "{name} awake in {seconds} s": "{name} проснулась за {seconds} с",
    "stopping {name} ({reason}): SIGTERM, SIGKILL after {grace} s": (
        "остановка {name} ({reason}): SIGTERM, через {grace} с SIGKILL"
    ),
    "1-token warm-up request": "прогревочный запрос на 1 токен",
    "port not accepting connections yet": "порт пока не принимает соединения",
    "health 200; checking /v1/models": "health 200; проверяем /v1/models",
    "health answered {status}": "health ответил {status}",
    "/v1/models lists {ids}, not {name}": "/v1/models называет {ids}, а не {name}",
    "ready in {seconds} s": "готова за {seconds} с",
    "awake in {seconds} s": "проснулась за {seconds} с",
    # the client's own (vlmswap.Client), shown by the UI and the CLI
    "The gateway at {url} is not reachable ({detail}). "
    "Start it with `vlmswap serve` (or `vlmswap up` for gateway and UI together).": (
        "Шлюз {url} недоступен ({detail}). Запустите его командой `vlmswap serve` "
        "(или `vlmswap up` — шлюз вместе с интерфейсом)."
    ),
    "The gateway at {url} is not reachable. "
    "Start it with `vlmswap serve` (or `vlmswap up` for gateway and UI together).": (
        "Шлюз {url} недоступен. Запустите его командой `vlmswap serve` (или `vlmswap up` — шлюз вместе с интерфейсом)."
    ),
    "The gateway at {url} did not answer {what} in time.": "Шлюз {url} вовремя не ответил на {what}.",
}
