"""What the full-text search index costs a crawl, and how fast it answers: N synthetic person
pages (default 100,000) entered into a catalog with the real schema, then searched.

    python benchmarks/search_index.py                        # 100,000 pages, 3 repetitions
    python benchmarks/search_index.py --pages 10000 --repeat 1 --runs 5   # a quick look

Every page is a person page of a memorial book with its main text as the crawl hands it to
the catalog (``extract.py``: ``pagetext`` lines, case-folded, joined by newlines; about
1-2 KB of UTF-8 Cyrillic): name, birth, arrest, sentence, rehabilitation and two paragraphs
of biography. Names are drawn with skewed (Zipf-like) weights from lists of Russian
surnames, first names and patronymics, so a common surname is on thousands of pages while
most full names are on one. 30 % of the pages keep "ё" (Пётр, Фёдоров); the others are from
sources that print it "е", as most do. The seed is fixed: every run builds the same pages.

1. **Indexing cost.** The N capture rows are entered through ``Catalog.add_capture`` as a
   crawl enters them (one savepoint per URL inside a batch, a commit every ``--batch`` rows),
   into a fresh catalog each time, in four variants run interleaved, ``--repeat`` times:

   * *indexed*: the rows carry their text, so ``add_capture`` indexes it (schema 11);
   * *indexed, no savepoint*: the same, one plain transaction per batch and no savepoint
     per row, each text indexed at once (as ``crawler search-index`` fills it). FTS5 writes
     its pending terms out at every savepoint; a crawl's batch therefore enters its texts
     into the index only when it commits (``Catalog._texts``), and *indexed* should cost
     about what this variant does;
   * *row only*: the same rows with ``text=None`` (the peer: the row insert alone);
   * *row only, schema 10*: as *row only* with the ``captures_text`` index dropped, i.e. the
     catalog as it was before search existed (that index is part of search's cost).

   Then the same N pages are entered again as a second crawl (same ``text_hash``): on the
   indexed catalog the index must add nothing. Reported: medians of µs per page, the index's
   own cost (indexed minus row only) and the ratio, and the catalog's size after the first
   crawl (checkpointed; bytes per page of index, and ``dbstat``'s bytes per structure).
2. **Query latency.** On the last indexed catalog (N texts, 2N captures after the recrawl),
   queries go through ``textindex.search`` (what the dashboard and ``crawler search`` call):
   median and p95 of ``--runs`` runs after a first run on a fresh connection (shown apart
   as "first": the file is in the OS cache, SQLite's page cache is empty). "rank only" is
   the FTS5 ``MATCH ... ORDER BY bm25 LIMIT`` alone, without the snippets and the capture
   look-ups, to show where the time goes. A surname is searched as typed with "е" and with
   "ё", against the count of texts that have it either way. The peer for the rare name is a
   scan of the same texts: SQL ``LIKE '%name%'`` over an ordinary table, and a Python
   substring test over the texts in memory (both only find the texts: no captures, no
   snippet, no ranking, which favours them). ``textindex.unindexed``, which the dashboard
   and ``crawler search`` run before every query, is timed too.

Everything printed is measured in the run; nothing is carried over from an earlier one. The
insertion phase stops repeating early if it would overrun ``--budget`` seconds, and says so.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import itertools
import math
import platform
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from crawler.archive import textindex
from crawler.archive.catalog import CaptureRow, Catalog
from crawler.capture import pagetext, urls

SEED = 19370805  # the pages are the same in every run
HOST = "memorial.example"
TARGET = "bench"
CRAWLS = ("20261101T000000Z", "20261201T000000Z")
STAMPS = ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
VARIANTS = ("indexed", "indexed, no savepoint", "row only", "row only, schema 10")
ABSENT = "Шварценеггер"  # in no page
YO_SHARE = 0.3  # pages whose source prints "ё" (the others print "е": Пётр, Петр)

T = TypeVar("T")


def _words(text: str) -> tuple[str, ...]:
    """Split a list written as one string (one word per name keeps the lists readable)."""
    return tuple(text.split())


# -- names -------------------------------------------------------------------------------------
# Most frequent first: the weights below fall with the rank, as surnames do in a population.
SURNAMES = _words(
    "Иванов Смирнов Кузнецов Попов Васильев Петров Соколов Михайлов Новиков Фёдоров "
    "Морозов Волков Алексеев Лебедев Семёнов Егоров Павлов Козлов Степанов Николаев Орлов "
    "Андреев Макаров Никитин Захаров Зайцев Соловьёв Борисов Яковлев Григорьев Романов "
    "Воробьёв Сергеев Кузьмин Фролов Александров Дмитриев Королёв Гусев Киселёв Ильин "
    "Максимов Поляков Сорокин Виноградов Ковалёв Белов Медведев Антонов Тарасов Жуков "
    "Баранов Филиппов Комаров Давыдов Беляев Герасимов Богданов Осипов Сидоров Матвеев "
    "Титов Марков Миронов Крылов Куликов Карпов Власов Мельников Денисов Гаврилов Тихонов "
    "Казаков Афанасьев Данилов Савельев Тимофеев Фомин Чернов Абрамов Мартынов Ефимов "
    "Федотов Щербаков Назаров Калинин Исаев Чернышёв Быков Маслов Родионов Коновалов "
    "Лазарев Воронин Климов Филатов Пономарёв Голубев Кудрявцев Прохоров Наумов Потапов "
    "Журавлёв Овчинников Трофимов Леонов Соболев Ермаков Колесников Гончаров Емельянов "
    "Никифоров Грачёв Котов Гришин Ефремов Архипов Громов Кириллов Малышев Панов Моисеев "
    "Румянцев Акимов Кондратьев Бирюков Горбунов Анисимов Ерёмин Тихомиров Галкин Лукьянов "
    "Михеев Скворцов Юдин Белоусов Нестеров Симонов Прокофьев Харитонов Князев Цветков "
    "Левин Митрофанов Воронцов Фадеев Шестаков Муравьёв Покровский Преображенский "
    "Вознесенский Успенский Троицкий Рождественский Богоявленский Ковальский Высоцкий "
    "Загорский Шевченко Коваленко Бондаренко Ткаченко Кравченко Каминский Левицкий Рабинович "
    "Гольдберг Кац Ахмедов Алиев Садыков Шмидт Миллер Вайнштейн Юсупов Гасанов Мамедов "
    "Петерсон Озолс Берзиньш Калниньш Лацис Ковальчук Мельничук Савчук Гринберг Фельдман"
)
# (first name, patronymic of a son, patronymic of a daughter)
MEN = tuple(tuple(f.split("/")) for f in _words(
    "Иван/Иванович/Ивановна Пётр/Петрович/Петровна Николай/Николаевич/Николаевна "
    "Алексей/Алексеевич/Алексеевна Михаил/Михайлович/Михайловна "
    "Василий/Васильевич/Васильевна Фёдор/Фёдорович/Фёдоровна Сергей/Сергеевич/Сергеевна "
    "Александр/Александрович/Александровна Андрей/Андреевич/Андреевна "
    "Дмитрий/Дмитриевич/Дмитриевна Павел/Павлович/Павловна Григорий/Григорьевич/Григорьевна "
    "Яков/Яковлевич/Яковлевна Степан/Степанович/Степановна Егор/Егорович/Егоровна "
    "Семён/Семёнович/Семёновна Илья/Ильич/Ильинична Тимофей/Тимофеевич/Тимофеевна "
    "Константин/Константинович/Константиновна Владимир/Владимирович/Владимировна "
    "Борис/Борисович/Борисовна Георгий/Георгиевич/Георгиевна Кузьма/Кузьмич/Кузьминична "
    "Лев/Львович/Львовна Максим/Максимович/Максимовна Матвей/Матвеевич/Матвеевна "
    "Никита/Никитич/Никитична Осип/Осипович/Осиповна Прохор/Прохорович/Прохоровна "
    "Роман/Романович/Романовна Тихон/Тихонович/Тихоновна Филипп/Филиппович/Филипповна "
    "Ефим/Ефимович/Ефимовна Захар/Захарович/Захаровна Антон/Антонович/Антоновна "
    "Афанасий/Афанасьевич/Афанасьевна Гавриил/Гавриилович/Гаврииловна "
    "Леонид/Леонидович/Леонидовна Евгений/Евгеньевич/Евгеньевна Марк/Маркович/Марковна "
    "Абрам/Абрамович/Абрамовна Моисей/Моисеевич/Моисеевна Исаак/Исаакович/Исааковна "
    "Давид/Давидович/Давидовна Карл/Карлович/Карловна Ян/Янович/Яновна "
    "Эдуард/Эдуардович/Эдуардовна Ахмед/Ахмедович/Ахмедовна Арсений/Арсеньевич/Арсеньевна "
    "Герман/Германович/Германовна Савва/Саввич/Саввична Лука/Лукич/Лукинична"
))
WOMEN = _words(
    "Мария Анна Евдокия Анастасия Александра Екатерина Татьяна Прасковья Ольга Елена Наталья "
    "Вера Надежда Любовь Ксения Пелагея Агафья Матрёна Софья Марфа Ирина Антонина Клавдия "
    "Зинаида Валентина Нина Лидия Евгения Елизавета Варвара Фаина Раиса Ревекка Эмма Юлия "
    "Галина Дарья Акулина Фёкла Василиса"
)
# (adjective as in "Калининская обл.", as in "по Калининской обл.")
REGIONS = tuple(tuple(r.split("/")) for r in _words(
    "Калининская/Калининской Ленинградская/Ленинградской Московская/Московской "
    "Ярославская/Ярославской Ивановская/Ивановской Горьковская/Горьковской "
    "Смоленская/Смоленской Курская/Курской Воронежская/Воронежской Орловская/Орловской "
    "Тульская/Тульской Рязанская/Рязанской Саратовская/Саратовской Куйбышевская/Куйбышевской "
    "Сталинградская/Сталинградской Свердловская/Свердловской Челябинская/Челябинской "
    "Омская/Омской Новосибирская/Новосибирской Иркутская/Иркутской Вологодская/Вологодской "
    "Архангельская/Архангельской Кировская/Кировской Пермская/Пермской Оренбургская/Оренбургской "
    "Ростовская/Ростовской Харьковская/Харьковской Киевская/Киевской Одесская/Одесской "
    "Винницкая/Винницкой Житомирская/Житомирской Минская/Минской Витебская/Витебской "
    "Гомельская/Гомельской Могилёвская/Могилёвской Читинская/Читинской"
))
CITIES = _words(
    "Москва Ленинград Калинин Ярославль Иваново Горький Смоленск Курск Воронеж Орёл Тула Рязань "
    "Саратов Куйбышев Сталинград Свердловск Челябинск Омск Новосибирск Иркутск Вологда "
    "Архангельск Киров Пермь Оренбург Ростов-на-Дону Харьков Киев Одесса Винница Житомир Минск "
    "Витебск Гомель Могилёв Чита Кострома Тверь Вязьма Ржев Торжок Кашин Бежецк Углич Рыбинск "
    "Муром Ковров Елец Ливны Мценск Борисоглебск Балашов Сызрань Камышин Шадринск Тобольск "
    "Томск Красноярск Хабаровск Владивосток Благовещенск Петрозаводск Мурманск Уфа Казань"
)
VILLAGE_ROOTS = _words(
    "Берёз Сосн Крас Ольх Дуб Лип Камен Горел Ключ Рыб Медвед Волч Лис Гусин Новосёл Погорел "
    "Быстр Никольск Покровск Троицк Воскресенск Петр Иван Михайл Андре Глинищ Сухар Мокр Высок "
    "Озер Заречн Подгорн Лугов Полев Хомут Кузнец Мельнич Гончар Овсян Ржан"
)
VILLAGE_ENDS = ("овка", "ово", "ино", "ское", "ки", "ицы")
STREETS = _words(
    "Ленина Советская Садовая Красноармейская Пролетарская Коммунистическая Первомайская "
    "Школьная Набережная Полевая Заводская Трудовая Октябрьская Комсомольская Пушкина "
    "Гоголя Луговая Лесная Речная Базарная Соборная Церковная Почтовая Вокзальная"
)
NATIONS = ("русский", "русский", "русский", "русский", "украинец", "белорус", "еврей", "поляк",
           "латыш", "немец", "татарин", "эстонец", "финн", "грек", "кореец", "армянин")
EDUCATION = ("неграмотный", "малограмотный", "начальное", "начальное", "среднее", "неполное "
             "среднее", "высшее", "духовная семинария", "реальное училище", "гимназия")
PARTY = ("б/п", "б/п", "б/п", "член ВКП(б)", "исключён из ВКП(б) в 1936 г.", "кандидат в члены "
         "ВКП(б)", "бывший член РСДРП(м)", "бывший эсер", "член ВЛКСМ")
JOBS = (
    "колхозник", "единоличник", "рабочий завода «Красный путиловец»", "слесарь депо",
    "учитель начальной школы", "священник Никольской церкви", "псаломщик", "бухгалтер "
    "райпотребсоюза", "председатель колхоза «Красный пахарь»", "агроном МТС", "инженер "
    "паровозоремонтного завода", "врач районной больницы", "счетовод сельпо", "кузнец",
    "сапожник артели «Победа»", "преподаватель техникума", "научный сотрудник института",
    "директор школы", "машинист паровоза", "стрелочник станции", "лесник", "мельник",
    "портной", "плотник", "военнослужащий, командир роты", "студент университета",
    "шофёр автобазы", "заведующий складом", "монахиня", "домохозяйка", "конюх колхоза",
    "рабочий лесозавода", "забойщик шахты № 3", "сторож", "экономист наркомата",
    "редактор районной газеты", "художник", "фельдшер", "ветеринар", "печник")
ORGANS = ("тройка при УНКВД по {r} обл.", "тройка при УНКВД по {r} обл.",
          "Особое совещание при НКВД СССР", "Комиссия НКВД и Прокуратуры СССР",
          "ВКВС СССР", "военный трибунал войск НКВД {r} обл.", "спецколлегия облсуда {r} обл.")
ARTICLES = ("58-10", "58-10", "58-10, 58-11", "58-2, 58-11", "58-6", "58-7", "58-8",
            "58-9", "58-14", "58-1а", "59-3", "58-6, 58-9, 58-11")
SENTENCES = ("ВМН (расстрел)", "ВМН (расстрел)", "10 лет ИТЛ", "8 лет ИТЛ", "5 лет ИТЛ",
             "3 года ссылки в Казахстан", "25 лет ИТЛ", "10 лет ИТЛ с поражением в правах на 5 "
             "лет", "5 лет ссылки в Красноярский край")
MONTHS = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа",
          "сентября", "октября", "ноября", "декабря")
CASE_NAMES = ("контрреволюционной церковной группы", "троцкистской организации",
              "повстанческой организации", "шпионско-диверсионной группы",
              "«Промпартии»", "«Союза трудового крестьянства»", "польской организации войсковой",
              "латышского национального центра", "харбинцев", "немецкой агентуры",
              "вредительской группы на заводе", "кулацкой группы в колхозе")
BIOGRAPHY = (
    "В {y0} году окончил {school} в г. {city}.",
    "С {y1} года работал в г. {city2} ({job}), затем переехал в {village}.",
    "Участник Первой мировой войны, рядовой {n} пехотного полка, был ранен под {city2}.",
    "В 1918–1920 гг. служил в Красной армии, участвовал в боях на Южном фронте.",
    "В {y1} году раскулачен, хозяйство конфисковано, семья выслана в {r2} обл.",
    "Жена — {wife}, {wy} г. р., после ареста мужа выслана с детьми в {r2} обл.",
    "Жена — {wife}, {wy} г. р., арестована в {y2} году как член семьи изменника Родины.",
    "Дети: {kids}.",
    "Арестован по делу {case}; вместе с ним арестованы ещё {n} человек из {village}.",
    "На допросах виновным себя {plea}.",
    "Приговор приведён в исполнение {date} в г. {city}; место захоронения — {burial}.",
    "Освобождён в {y3} году, вернулся в {village} ({job2}), умер в {y4} году.",
    "Умер в заключении в {camp} {date}.",
    "Сведения о судьбе после {y2} года отсутствуют.",
    "Письма из лагеря к дочери, {kid}, хранятся в семье; копии переданы в Мемориал.",
    "Фотография {y0} года из следственного дела; других фотографий не сохранилось.",
    "Брат {brother} также репрессирован, расстрелян в {y2} году.",
    "По воспоминаниям дочери, {kid}, при обыске изъяли {things}.",
    "Проживал по адресу: г. {city}, ул. {street}, д. {n}, кв. {flat}.",
    "В {y3} году дело пересмотрено, приговор отменён за отсутствием состава преступления.",
)
SCHOOLS = ("церковно-приходскую школу", "земское училище", "гимназию", "реальное училище",
           "духовную семинарию", "учительскую семинарию", "рабфак", "университет",
           "политехнический институт", "сельскохозяйственный техникум", "ремесленное училище")
CAMPS = ("Ухтпечлаге", "Севвостлаге", "Карлаге", "Белбалтлаге", "Сиблаге", "Норильлаге",
         "Темлаге", "Устьвымлаге", "Бамлаге", "Дальлаге", "Воркутлаге", "Унжлаге")
BURIALS = ("Бутовский полигон", "Левашовская пустошь", "Коммунарка", "Сандармох",
           "Куропаты", "урочище Быковня", "Медное", "Красный Бор", "неизвестно",
           "Донское кладбище")
THINGS = ("книги и переписку", "иконы и церковную утварь", "охотничье ружьё", "дневник",
          "облигации займа", "фотографии родственников за границей", "письма из Харбина",
          "рукописи стихов", "пишущую машинку")


@dataclass(frozen=True, slots=True)
class Page:
    """One person page as the crawl enters it."""

    name: str  # "Surname First Patronymic", as written on the page
    title: str
    text: str  # main text, as extract.py hands it to the catalog
    text_hash: str


class Draw:
    """Seeded choices: skewed (rank-weighted) for names, uniform for the rest."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._cums: dict[int, list[float]] = {}

    def skewed(self, items: Sequence[str] | Sequence[tuple[str, ...]], flatten: float = 4.0,
               ) -> int:
        """Return an index into ``items``, weight 1/(rank + flatten) (Zipf-like): the first
        is the most frequent, the tail still occurs."""
        cum = self._cums.get(id(items))
        if cum is None:
            cum = self._cums[id(items)] = list(itertools.accumulate(
                1.0 / (rank + flatten) for rank in range(len(items))))
        return bisect.bisect(cum, self.rng.random() * cum[-1])

    def pick(self, items: Sequence[T]) -> T:
        return items[self.rng.randrange(len(items))]

    def year(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def date(self, year: int) -> str:
        return f"{self.rng.randint(1, 28)} {self.pick(MONTHS)} {year} г."


def feminine(surname: str) -> str:
    """Return a surname's feminine form (Иванов -> Иванова, Троицкий -> Троицкая)."""
    if surname.endswith(("ский", "цкий")):
        return surname[:-2] + "ая"
    if surname.endswith(("ов", "ев", "ёв", "ин", "ын")):
        return surname + "а"
    return surname  # Шевченко, Миллер, Кац, Озолс...


class Slots(dict[str, object]):
    """The values a biography sentence's ``{slots}`` take: drawn when a sentence uses one
    (drawing all of them for every sentence made generating the pages slow), afresh for each
    use but for the page's own village."""

    def __init__(self, draw: Draw, surname: str, father: tuple[str, ...], village: str,
                 born: int, arrested: int) -> None:
        super().__init__(village=village)
        d, pick, year = draw, draw.pick, draw.year
        self._make: dict[str, Callable[[], object]] = {
            "y0": lambda: born + year(10, 20), "y1": lambda: year(1905, 1930),
            "y2": lambda: arrested + year(0, 2), "y3": lambda: year(1947, 1960),
            "y4": lambda: year(1960, 1985), "school": lambda: pick(SCHOOLS),
            "city": lambda: pick(CITIES), "city2": lambda: pick(CITIES),
            "job": lambda: pick(JOBS), "job2": lambda: pick(JOBS), "n": lambda: year(2, 300),
            "r2": lambda: pick(REGIONS)[1], "wy": lambda: year(1870, 1920),
            "wife": lambda: f"{feminine(surname)} {pick(WOMEN)} {pick(MEN)[2]}",
            "kids": lambda: ", ".join(
                f"{pick(WOMEN) if d.rng.random() < 0.5 else pick(MEN)[0]} "
                f"({year(1905, 1937)})" for _ in range(year(1, 5))),
            "kid": lambda: pick(WOMEN), "case": lambda: pick(CASE_NAMES),
            "plea": lambda: pick(("не признал", "признал", "признал частично")),
            "date": lambda: d.date(arrested + year(0, 1)), "burial": lambda: pick(BURIALS),
            "camp": lambda: pick(CAMPS), "brother": lambda: f"{pick(MEN)[0]} {father[1]}",
            "things": lambda: pick(THINGS), "street": lambda: pick(STREETS),
            "flat": lambda: year(1, 120)}

    def __missing__(self, key: str) -> object:
        return self._make[key]()


def person(draw: Draw, number: int) -> Page:
    """Return person page ``number`` (its text as the crawl extracts it)."""
    female = draw.rng.random() < 0.15
    surname = SURNAMES[draw.skewed(SURNAMES)]
    father = MEN[draw.skewed(MEN)]
    if female:
        surname, first, patronymic = feminine(surname), WOMEN[draw.skewed(WOMEN)], father[2]
    else:
        first, patronymic = MEN[draw.skewed(MEN)][0], father[1]
    name = f"{surname} {first} {patronymic}"
    born = draw.year(1860, 1920)
    arrested = draw.rng.choice((1929, 1930, 1933, 1935, 1937, 1937, 1937, 1938, 1938, 1941))
    region, region_gen = REGIONS[draw.rng.randrange(len(REGIONS))]
    village = f"д. {draw.pick(VILLAGE_ROOTS)}{draw.pick(VILLAGE_ENDS)}"
    sentence = draw.pick(SENTENCES)
    fate = (f"Расстрелян {draw.date(arrested)}" if sentence.startswith("ВМН")
            else f"Освобождён в {arrested + draw.year(3, 10)} г.")
    lines = [
        name,
        f"Родился в {born} г., {region} губ., {draw.pick(VILLAGE_ROOTS)}ский у., {village}; "
        f"{draw.pick(NATIONS) if not female else 'русская'}; образование: "
        f"{draw.pick(EDUCATION)}; {draw.pick(PARTY)}.",
        f"{draw.pick(JOBS).capitalize()}. Проживал: {region} обл., г. {draw.pick(CITIES)}.",
        f"Арестован {draw.date(arrested)}",
        f"Приговорен: {draw.pick(ORGANS).format(r=region_gen)} {draw.date(arrested)}, обв.: "
        f"по ст. {draw.pick(ARTICLES)} УК РСФСР.",
        f"Приговор: {sentence}. {fate}.",
        f"Реабилитирован {draw.date(draw.year(1956, 1992))}",
    ]
    slots = Slots(draw, surname, father, village, born, arrested)
    filled = [s.format_map(slots).replace("г..", "г.")
              for s in draw.rng.sample(BIOGRAPHY, draw.rng.randint(7, 11))]
    half = len(filled) // 2
    lines += [" ".join(filled[:half]), " ".join(filled[half:]),
              f"Источник: Книга памяти {region_gen} обл.; архивное дело П-{number + 10000:d}, "
              f"ф. {draw.year(1, 9999)}, оп. {draw.year(1, 12)}."]
    if draw.rng.random() >= YO_SHARE:  # this source prints "ё" as "е"
        lines = [line.replace("ё", "е").replace("Ё", "Е") for line in lines]
        name = lines[0]
    folded = pagetext.normalize_lines(lines)
    return Page(name, f"{name} ({born}) — Жертвы политического террора", "\n".join(folded),
                pagetext.text_hash(folded))


def pages(n: int) -> list[Page]:
    """Return the ``n`` person pages (the same for a given ``n`` in every run)."""
    draw = Draw(SEED)
    return [person(draw, i) for i in range(n)]


def capture_rows(people: list[Page], crawl: int, with_text: bool) -> list[CaptureRow]:
    """Return the rows a crawl enters for the pages (the recrawl: revisits, same texts)."""
    prefix = urls.canonical_key(f"http://{HOST}/")
    assert urls.canonical_key(f"http://{HOST}/person/7") == prefix + "person/7"
    return [CaptureRow(
        url=f"http://{HOST}/person/{i}", key=f"{prefix}person/{i}", kind="page", depth=1,
        fetched_at=STAMPS[crawl], status=200, mime="text/html", digest=f"sha1:P{i:031d}",
        length=len(page.text) * 2, warc_file=f"{TARGET}-{crawl:05d}.warc.gz",
        warc_offset=i * 2500, warc_length=2400,
        record_type="response" if crawl == 0 else "revisit", title=page.title,
        text_hash=page.text_hash, outlinks=12, record_id=f"<urn:uuid:{crawl}-{i}>",
        surt=f"{prefix}person/{i}", text=page.text if with_text else None)
        for i, page in enumerate(people)]


# -- indexing ------------------------------------------------------------------------------------

@dataclass(slots=True)
class Entered:
    """One variant's run in a fresh catalog."""

    variant: str
    first_s: float  # entering the first crawl's N rows
    recrawl_s: float  # entering the second crawl's N rows (same texts)
    size: int  # catalog bytes after the first crawl, checkpointed
    structures: dict[str, int]  # dbstat: bytes per table and index, after the first crawl
    texts: tuple[int, int]  # rows in page_texts after each crawl


def enter(catalog: Catalog, pk: int, rows: list[CaptureRow], batch: int,
          savepoints: bool = True) -> float:
    """Enter rows as the crawl does (a savepoint per URL inside a batch, a commit every
    ``batch`` rows), or without the savepoints (one plain transaction per batch, as
    ``crawler search-index`` fills the index); return the seconds it took."""
    gc.collect()
    started = time.perf_counter()
    if not savepoints:
        for at in range(0, len(rows), batch):
            with catalog.transaction():
                for row in rows[at:at + batch]:
                    catalog.add_capture(pk, row)
        return time.perf_counter() - started
    catalog.begin_batch()
    for count, row in enumerate(rows, 1):
        with catalog.transaction():
            catalog.add_capture(pk, row)
        if count % batch == 0:
            catalog.end_batch()
            catalog.begin_batch()
    catalog.end_batch()
    return time.perf_counter() - started


def structures(db: sqlite3.Connection) -> dict[str, int]:
    """Return bytes per table and index (``dbstat``): FTS5's shadow tables separately, since
    ``_content`` is a second copy of the text and ``_data`` the inverted index proper."""
    try:
        return {name: int(size) for name, size in db.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name")}
    except sqlite3.OperationalError:  # SQLite built without dbstat
        return {}


def checkpointed_size(catalog: Catalog) -> int:
    """Return the catalog file's size with the WAL folded in."""
    catalog.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return catalog.path.stat().st_size


def run_variant(variant: str, root: Path, crawls: list[list[CaptureRow]],
                batch: int) -> Entered:
    """Build a fresh catalog under ``root`` and enter both crawls into it."""
    catalog = Catalog.open(root)
    try:
        if variant == "row only, schema 10":
            with catalog.transaction():
                catalog.db.execute("DROP INDEX captures_text")
        times, texts = [], []
        size, parts = 0, {}
        for crawl_id, rows in zip(CRAWLS, crawls, strict=True):
            pk = catalog.add_crawl(TARGET, crawl_id, root / TARGET / crawl_id,
                                   {"seeds": [f"http://{HOST}/"]})
            times.append(enter(catalog, pk, rows, batch,
                               savepoints=variant != "indexed, no savepoint"))
            catalog.finish_crawl(pk, "complete", "done", 0)
            texts.append(catalog.db.execute("SELECT count(*) FROM page_texts").fetchone()[0])
            if not size:
                size, parts = checkpointed_size(catalog), structures(catalog.db)
    finally:
        catalog.close()
    return Entered(variant, times[0], times[1], size, parts, (texts[0], texts[1]))


# -- queries -------------------------------------------------------------------------------------

@dataclass(slots=True)
class Timed:
    """Latencies of one query, in seconds."""

    first: float
    runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def p95(self) -> float:  # nearest rank
        ordered = sorted(self.runs)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def timed(call: Callable[[], object], runs: int) -> Timed:
    """Time ``call``: one warm-up run (reported as "first"), then ``runs`` runs."""
    started = time.perf_counter()
    call()
    first = time.perf_counter() - started
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return Timed(first, times)


def choose_queries(people: list[Page], db: sqlite3.Connection) -> list[tuple[str, str]]:
    """Return (what, query) pairs, chosen from the generated pages (not hard-coded names)."""
    names = Counter(yo_as_e(p.name) for p in people)
    surnames = Counter(yo_as_e(p.name.split()[0]) for p in people)
    rare = None
    # a full name on one page (either spelling), of one of the rarer surnames, checked through
    # the index: its three words could also meet on another page (a relative's name)
    for page in sorted((p for p in people if names[yo_as_e(p.name)] == 1),
                       key=lambda p: (surnames[yo_as_e(p.name.split()[0])], p.name)):
        if len(textindex.search(db, page.name, limit=5).hits) == 1:
            rare = page.name
            break
    assert rare is not None, "no full name is on exactly one page"
    common = surnames.most_common(1)[0][0]
    first, patronymic = rare.split()[1:]
    return [("rare full name (1 page)", rare),
            ("common surname", common),
            ("prefix", common[:4] + "*"),
            ("phrase in quotes", f'"{first} {patronymic}"'),
            ("word on every page", "Арестован"),
            ("word in no page", ABSENT),
            ("surname, е typed", "Федоров"),
            ("surname, ё typed", "Фёдоров")]


def yo_as_e(text: str) -> str:
    """Return the text with "ё" written "е" (how most sources print it)."""
    return text.replace("ё", "е").replace("Ё", "Е")


def query_table(root: Path, people: list[Page], runs: int) -> None:
    """Time the queries on the catalog under ``root``, and the peers; print the tables."""
    chooser = Catalog.open(root, read_only=True)  # its own connection (and page cache):
    try:  # the timed one below starts cold but for the OS's file cache
        queries = choose_queries(people, chooser.db)
    finally:
        chooser.close()
    catalog = Catalog.open(root, read_only=True)
    db = catalog.db
    try:
        columns = [r[1] for r in db.execute("PRAGMA table_info(page_search)")]
        # ranked as search() ranks: the title weighs 4, every other column 1
        bm25 = ", ".join(["page_search", "4.0", *["1.0"] * (len(columns) - 1)])
        print(f"\nQueries through textindex.search (limit 50) on {len(people):,} texts, "
              f"{db.execute('SELECT count(*) FROM captures').fetchone()[0]:,} captures "
              f"(FTS5 columns: {', '.join(columns)}); {runs} runs after 1 warm-up:")
        print(f"{'query':24} {'typed':28} {'URLs':>5} {'capts':>6} {'matching':>9} "
              f"{'first':>8} {'median':>8} {'p95':>8} {'rank only':>10}")
        rare_median = 0.0
        for what, query in queries:
            expression = textindex.match_expression(query)
            full = timed(lambda q=query: textindex.search(db, q), runs)  # type: ignore[misc]
            rank = timed(lambda e=expression: db.execute(  # type: ignore[misc]
                "SELECT rowid FROM page_search WHERE page_search MATCH ? "
                f"ORDER BY bm25({bm25}) LIMIT 51", (e,)).fetchall(), runs)
            found = textindex.search(db, query)
            matching = db.execute("SELECT count(*) FROM page_search WHERE page_search MATCH ?",
                                  (expression,)).fetchone()[0]
            if rare_median == 0.0:
                rare_median = full.median
            print(f"{what:24} {query:28} {len(found.hits):5d} "
                  f"{sum(len(h.captures) for h in found.hits):6d} {matching:9,d} "
                  f"{full.first * 1e3:6.2f}ms {full.median * 1e3:6.2f}ms "
                  f"{full.p95 * 1e3:6.2f}ms {rank.median * 1e3:8.2f}ms")
        either = re.compile(r"(?<!\w)ф[её]доров(?!\w)")
        print("  URLs, capts: hits and captures on the first page of results; matching: "
              "texts the index matches in all; the texts with the word фёдоров or федоров "
              f"(a regex scan): {sum(bool(either.search(p.text)) for p in people):,}")
        check = timed(lambda: textindex.unindexed(db), runs)
        print(f"{'unindexed() check':53} {textindex.unindexed(db):15,d} "
              f"{check.first * 1e3:6.2f}ms {check.median * 1e3:6.2f}ms "
              f"{check.p95 * 1e3:6.2f}ms   (run before every search by the dashboard "
              f"and `crawler search`)")
    finally:
        catalog.close()
    scan_peer(root.parent, people, queries[0][1], rare_median, runs)


def scan_peer(tmp: Path, people: list[Page], name: str, fts_median: float, runs: int) -> None:
    """Time finding the rare name without the index: a LIKE scan and a substring scan."""
    needle = name.casefold()  # the stored text is case-folded; LIKE folds ASCII only
    db = sqlite3.connect(tmp / "plain.sqlite3")
    try:
        db.execute("CREATE TABLE plain (id INTEGER PRIMARY KEY, hash TEXT, title TEXT, "
                   "body TEXT)")
        with db:
            db.executemany("INSERT INTO plain (hash, title, body) VALUES (?, ?, ?)",
                           ((p.text_hash, p.title, p.text) for p in people))
        like = timed(lambda: db.execute("SELECT hash FROM plain WHERE body LIKE ?",
                                        (f"%{needle}%",)).fetchall(), runs)
        found_like = len(db.execute("SELECT hash FROM plain WHERE body LIKE ?",
                                    (f"%{needle}%",)).fetchall())
    finally:
        db.close()
    texts = [p.text for p in people]
    substring = timed(lambda: [i for i, t in enumerate(texts) if needle in t], runs)
    found_sub = sum(needle in t for t in texts)
    print(f"\nPeer for the rare name {name!r} (finds the texts only: no ranking, snippet or "
          "captures):")
    print(f"{'':40} {'found':>6} {'median':>10} {'p95':>10} {'÷ search()':>11}")
    print(f"{'textindex.search (FTS5)':40} {'':6} {fts_median * 1e3:8.2f}ms")
    for label, result, found in (("SQL LIKE '%name%' over a plain table", like, found_like),
                                 ("Python substring test, texts in memory", substring,
                                  found_sub)):
        print(f"{label:40} {found:6d} {result.median * 1e3:8.2f}ms {result.p95 * 1e3:8.2f}ms "
              f"{result.median / fts_median:10.0f}×")


# -- report --------------------------------------------------------------------------------------

def index_table(results: list[Entered], people: list[Page], repeat: int, wanted: int,
                batch: int) -> None:
    """Print the indexing table (medians over the repetitions) and what follows from it."""
    n = len(people)
    by = {v: [r for r in results if r.variant == v] for v in VARIANTS}

    def med(variant: str, value: Callable[[Entered], float]) -> float:
        return statistics.median(value(r) for r in by[variant])

    print(f"\nIndexing: {n:,} pages per crawl, a commit every {batch} rows (and a savepoint "
          f"per row, as a crawl enters them, but for 'no savepoint'); median of {repeat} "
          "repetition(s), fresh catalogs, variants interleaved")
    if repeat < wanted:
        print(f"  ONLY {repeat} of the {wanted} repetitions asked for: another would have "
              "overrun --budget")
    print(f"{'variant':22} {'crawl 1':>11} {'recrawl':>11} {'catalog':>9} {'per page':>9} "
          f"{'texts':>15}   each run (crawl 1; recrawl), µs/page")
    for v in VARIANTS:
        runs = "; ".join(f"{r.first_s / n * 1e6:.1f}, {r.recrawl_s / n * 1e6:.1f}"
                         for r in by[v])
        texts = f"{by[v][-1].texts[0]:,}/{by[v][-1].texts[1]:,}"
        print(f"{v:22} {med(v, lambda r: r.first_s) / n * 1e6:7.1f}µs/p "
              f"{med(v, lambda r: r.recrawl_s) / n * 1e6:7.1f}µs/p "
              f"{med(v, lambda r: r.size) / 1e6:7.1f}MB {med(v, lambda r: r.size) / n:7.0f} B "
              f"{texts:>15}   {runs}")
    print("  µs/p: microseconds per page entered; catalog: its size after crawl 1 "
          "(checkpointed); texts: page_texts rows after crawl 1 / after the recrawl")
    first = {v: med(v, lambda r: r.first_s) / n * 1e6 for v in VARIANTS}
    again = {v: med(v, lambda r: r.recrawl_s) / n * 1e6 for v in VARIANTS}
    size = {v: med(v, lambda r: r.size) for v in VARIANTS}
    idx, plain, row, old = VARIANTS
    print(f"\nThe index's own cost, crawl 1:       {first[idx] - first[row]:7.1f} µs/page "
          f"(indexed {first[idx]:.1f} ÷ row only {first[row]:.1f} = "
          f"{first[idx] / first[row]:.2f}×)")
    print(f"  crawl's path minus one transaction: {first[idx] - first[plain]:+7.1f} µs/page "
          "(the crawl defers its batch's texts to the commit, past the per-URL savepoints)")
    print(f"Search's whole cost vs schema 10:    {first[idx] - first[old]:7.1f} µs/page "
          f"({first[idx] / first[old]:.2f}×; the captures_text index alone "
          f"{first[row] - first[old]:+.1f} µs/page)")
    print(f"Recrawl of unchanged pages:          {again[idx] - again[row]:+7.1f} µs/page "
          f"(indexed {again[idx]:.1f} vs row only {again[row]:.1f}: "
          f"{again[idx] / again[row]:.2f}×)")
    mean_chars = statistics.fmean(len(r.text) for r in people)
    mean_bytes = statistics.fmean(len(r.text.encode()) for r in people)
    print(f"Index size: {(size[idx] - size[row]) / n:,.0f} bytes/page "
          f"({(size[idx] - size[row]) / 1e6:.1f} MB) for texts of {mean_chars:,.0f} characters "
          f"= {mean_bytes:,.0f} bytes of UTF-8 on average; captures_text "
          f"{(size[row] - size[old]) / n:,.0f} bytes/page")
    parts = by[idx][-1].structures
    if parts:
        search = {k: v for k, v in parts.items()
                  if k.startswith("page_search") or k in ("page_texts", "captures_text",
                                                          "sqlite_autoindex_page_texts_1")}
        print("  search's structures (dbstat, bytes/page): " + ", ".join(
            f"{name} {value / n:,.0f}"
            for name, value in sorted(search.items(), key=lambda kv: -kv[1])))
        rest = sum(parts.values()) - sum(search.values())
        print(f"  the rest of the catalog: {rest / n:,.0f} bytes/page (captures "
              f"{parts.get('captures', 0) / n:,.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=100_000, help="pages per crawl")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each variant")
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each query")
    parser.add_argument("--batch", type=int, default=500, help="rows per commit")
    parser.add_argument("--budget", type=float, default=600.0,
                        help="seconds the repetitions may take before stopping early")
    parser.add_argument("--tmp", type=Path, default=None, help="where catalogs are built")
    args = parser.parse_args()
    wall = time.perf_counter()
    n = args.pages
    started = time.perf_counter()
    people = pages(n)
    generated = time.perf_counter() - started
    crawls = {True: [capture_rows(people, c, True) for c in (0, 1)],
              False: [capture_rows(people, c, False) for c in (0, 1)]}
    surnames = Counter(p.name.split()[0] for p in people)
    names = Counter(p.name for p in people)
    print(f"search_index benchmark: Python {platform.python_version()}, SQLite "
          f"{sqlite3.sqlite_version}, {platform.machine()}, {sys.platform}")
    print(f"{n:,} person pages generated in {generated:.1f}s (seed {SEED}): "
          f"{len(names):,} distinct full names, {sum(c == 1 for c in names.values()):,} on "
          f"one page only; {len(surnames):,} surnames, the commonest "
          f"{surnames.most_common(1)[0][0]} on {surnames.most_common(1)[0][1]:,} pages; "
          f"{len({p.text_hash for p in people}):,} distinct texts")
    results: list[Entered] = []
    with tempfile.TemporaryDirectory(prefix="search-index-bench-", dir=args.tmp) as tmp:
        keep = Path(tmp) / "kept"
        done = 0
        phase = time.perf_counter()
        for rep in range(args.repeat):
            rep_started = time.perf_counter()
            turn = rep % len(VARIANTS)  # a different variant first each time
            order = VARIANTS[turn:] + VARIANTS[:turn]
            for variant in order:
                root = Path(tmp) / f"r{rep}-{VARIANTS.index(variant)}"
                results.append(run_variant(variant, root, crawls[variant.startswith("indexed")],
                                           args.batch))
                if variant == "indexed":
                    if keep.exists():
                        shutil.rmtree(keep)
                    root.rename(keep)  # the last indexed catalog is queried below
                else:
                    shutil.rmtree(root)
            done += 1
            took = time.perf_counter() - rep_started
            print(f"  repetition {rep + 1}: {took:.0f}s", file=sys.stderr, flush=True)
            if (rep + 1 < args.repeat
                    and time.perf_counter() - phase + took > args.budget):
                break
        index_table(results, people, done, args.repeat, args.batch)
        query_table(keep, people, args.runs)
    print(f"\nTotal run time {time.perf_counter() - wall:.0f}s (generation "
          f"{generated:.0f}s, {done} repetition(s) of indexing)")


if __name__ == "__main__":
    main()
